"""`python -m qpa reproduce`: the paper's protocol field by field, padding counted as the official
code counts it, its perplexity formula, a tiny end-to-end run, and a fast clear offline failure.

Nothing is downloaded: a local text file with WikiText's empty and short lines stands in for
WikiText-2, another for its test split, and the tiny-gpt2 preset for GPT-2.
"""

import json
import math
import re
import time

import pytest
import torch

from qpa.cli.main import main
from qpa.config import DataConfig
from qpa.data.splits import build_splits
from qpa.models.tiny_tokenizer import tiny_tokenizer
from qpa.studies.reproduce import RECIPES, WIKITEXT2, batch_mean_perplexity, plan_recipe
from qpa.training.loop import lr_factor
from qpa.training.session import prepare

TRAIN = (
    "\n = Valkyria Chronicles III = \n\n Senjō no Valkyria 3 is a tactical role @-@ playing game\n"
    "\n = = Gameplay = = \n\n The game began development in 2010 .\n It sold well in Japan .\n\n"
)  # 10 lines, 5 of them empty, as WikiText's rows look
TEST = "\n = Robert Boulter = \n\n Robert Boulter is an English film actor .\n\n"  # 5 lines


@pytest.fixture
def files(tmp_path):
    (tmp_path / "train.txt").write_text(TRAIN, encoding="utf-8")
    (tmp_path / "test.txt").write_text(TEST, encoding="utf-8")
    return tmp_path / "train.txt", tmp_path / "test.txt"


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("QPA_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    return tmp_path / "runs"


def tiny(files, **more) -> dict:
    """Overrides that swap GPT-2 and WikiText-2 for the tiny preset and the local files."""
    train, test = files
    return {"model.model": "tiny-gpt2", "data.corpus": str(train),
            "data.eval_corpus": str(test), **more}  # fmt: skip


def test_gpt2_recipe_is_the_paper_protocol_field_by_field():
    plan = plan_recipe("gpt2-lora")
    m, a, q, d, t = (getattr(plan.config, s) for s in ("model", "adapter", "qpa", "data", "train"))
    assert m.model == "openai-community/gpt2"
    assert (a.method, a.target_modules, a.rank, a.lora_alpha, a.lora_dropout) == (
        "qpa-lora", ("lm_head",), 4, 8.0, 0.05)  # fmt: skip
    assert (q.chunk_size, q.depth, q.n_qubits, q.entangler, q.activation, q.pairing) == (
        2048, 8, 0, "ladder", "none", "random")  # fmt: skip
    assert (d.corpus, d.eval_corpus) == (WIKITEXT2, f"{WIKITEXT2}@test")
    assert (d.text_unit, d.max_length, d.packing, d.pad_with, d.max_examples) == (
        "line", 512, "example", "eos", 0)  # fmt: skip
    assert (t.batch_size, t.lr, t.weight_decay, t.warmup_fraction, t.grad_clip) == (
        1, 1e-5, 0, 0, 0)  # fmt: skip
    assert (t.schedule, t.perplexity, t.seed, t.loss_on, t.cache_backbone) == (
        "linear", "paper", 2025, "all", False)  # fmt: skip
    assert t.steps == 3 * 36_718 and t.eval_every == 36_718 and plan.train_rows == 36_718
    # get_linear_schedule_with_warmup(0, total): step k runs at lr·(total − k)/total
    assert [lr_factor(k, t) for k in (0, 1, t.steps - 1)] == pytest.approx(
        [1.0, (t.steps - 1) / t.steps, 1 / t.steps], rel=1e-12)  # fmt: skip
    assert (plan.counts.qpa_params, plan.counts.lora_params, plan.counts.n_qubits) == (106_264, 204_100, 7)


def test_baselines_and_gemma():
    qpa, lora = plan_recipe("gpt2-lora").config, plan_recipe("gpt2-lora", "lora").config
    assert (lora.adapter.method, lora.adapter.lora_dropout) == ("lora", 0.0)
    assert lora.replace(adapter=qpa.adapter) == qpa  # nothing else differs
    gemma = plan_recipe("gemma-lora", overrides={"adapter.method": "lora"})
    assert gemma.method == "lora" and gemma.config.model.model == "google/gemma-2-2b"
    assert gemma.config.qpa.chunk_size == 4096 and gemma.config.train.steps == 110_154
    assert (gemma.counts.qpa_params, gemma.counts.lora_params, gemma.counts.n_qubits) == (173_888, 1_032_192, 8)
    assert {r.expected["qpa-lora"].perplexity for r in RECIPES.values()} == {1.583, 1.417}
    with pytest.raises(ValueError, match="`recipe` = 'nope'"):
        plan_recipe("nope")


def test_dry_run_and_list_print_the_paper_figures(capsys):
    assert main(["reproduce"]) == 0
    listing = capsys.readouterr().out
    assert "gpt2-lora" in listing and "gemma-lora" in listing
    for name, row in (("gpt2-lora", ("106,264", "204,100", "52.06%")),
                      ("gemma-lora", ("173,888", "1,032,192", "16.84%"))):  # fmt: skip
        assert main(["reproduce", name, "--dry-run"]) == 0
        out = capsys.readouterr().out
        qpa, lora, ratio = row
        assert re.search(rf"QPA-LoRA +{qpa} +{qpa}\n", out)  # paper and counted agree
        assert re.search(rf"LoRA +{lora} +{lora}\n", out)
        assert re.search(rf"QPA / LoRA +{ratio} ", out)
        assert '"lr": 1e-05' in out and '"perplexity": "paper"' in out
    assert "QPA-LoRA 1.417, LoRA 1.418" in out
    assert main(["reproduce", "gpt2-lora", "--dry-run", "--json", "--method", "lora"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["method"] == "lora" and plan["expected"]["lora"]["perplexity"] == 1.595
    assert plan["counted"]["lora"] == plan["expected"]["lora"]["trainable_params"] == 204_100


def test_steps_follow_the_data_unless_given(files):
    plan = plan_recipe("gpt2-lora", overrides=tiny(files))
    assert plan.train_rows == 10 and plan.config.train.steps == 30  # 3 epochs × 10 lines
    assert plan.config.train.eval_every == 10  # the test split after every epoch
    capped = plan_recipe("gpt2-lora", overrides=tiny(files, **{"data.max_examples": 4}), epochs=1)
    assert (capped.train_rows, capped.config.train.steps) == (4, 4)
    fixed = plan_recipe("gpt2-lora", overrides=tiny(files, **{"train.steps": 7}))
    assert (fixed.config.train.steps, fixed.config.train.eval_every) == (7, 10)
    hub = plan_recipe("gpt2-lora", overrides={"data.max_examples": 50})  # counted, not downloaded
    assert (hub.train_rows, hub.config.train.steps) == (50, 150)
    assert plan.count_model == "tiny-gpt2" and plan.counts.qpa_params > 0


@pytest.mark.chatterbot
def test_lines_keep_empty_ones_and_pad_with_eos(files):
    train, test = files
    tok = tiny_tokenizer()
    cfg = DataConfig(corpus=str(train), eval_corpus=str(test), text_unit="line", max_length=64,
                     pad_with="eos")  # fmt: skip
    splits = build_splits(cfg, tok)
    assert (len(splits.train), len(splits.val)) == (10, 5)  # every line; no share held out
    assert (splits.val.attention_mask.sum(1) == 0).tolist() == [True, False, True, False, True]
    heading = splits.val.input_ids[1][splits.val.attention_mask[1].bool()]
    assert tok.decode(heading) == " = Robert Boulter = \n"  # the test split, whole and in order
    for enc in (splits.train, splits.val):
        assert (enc.input_ids[enc.attention_mask == 0] == tok.eos_token_id).all()
    plain = build_splits(DataConfig(corpus=str(train), max_length=64), tok)  # paragraphs
    assert len(plain.train) + len(plain.val) == 4
    assert (plain.train.input_ids[plain.train.attention_mask == 0] == tok.pad_token_id).all()
    with pytest.raises(ValueError, match="`eval_corpus` = .*holds plain texts"):
        build_splits(DataConfig(topics=("ai",), eval_corpus=str(test)), tok)
    with pytest.raises(ValueError, match="`eval_corpus`: `corpus` = .*absent"):
        build_splits(cfg.replace(eval_corpus=str(test.parent / "absent.txt")), tok)


@pytest.fixture
def session(files):
    """The recipe on the tiny model, QPA with matched pairing (deterministic), 64-token lines."""
    plan = plan_recipe(
        "gpt2-lora", overrides=tiny(files, **{"qpa.pairing": "matched", "data.max_length": 64})
    )
    session = prepare(plan.config)
    session.model.eval()
    return session


def official_loss(session, examples) -> float:
    """The official code's loss: labels = input_ids.clone(), pads included, HF's mean CE."""
    enc = session.splits.val
    ids = enc.input_ids[examples].to(session.device)  # (B, T)
    mask = enc.attention_mask[examples].to(session.device)
    with torch.no_grad():
        return session.model(input_ids=ids, attention_mask=mask, labels=ids.clone()).loss.item()


def test_padding_is_counted_in_the_loss(session):
    from qpa.training.session import split_loss

    rows = session.rows["val"]
    assert (rows.offsets.diff() == 63).all()  # every position of every row, pads included
    for example in ([0], [1], [0, 1]):  # an empty line (all padding), a heading, both
        with torch.no_grad():
            nll, _ = split_loss(session, "val", torch.tensor(example))
        assert nll.mean().item() == pytest.approx(official_loss(session, example), rel=1e-5)
    real = int(session.splits.val.attention_mask[1].sum())
    assert real < 30 and session.config.train.perplexity == "paper"  # most targets are pads


def test_batch_mean_perplexity_is_the_official_evaluate_model(session):
    result = batch_mean_perplexity(session, "val", batch_size=2)
    losses = [official_loss(session, [i, i + 1][: 5 - i]) for i in range(0, 5, 2)]
    assert result["perplexity"] == pytest.approx(math.exp(sum(losses) / 3), rel=1e-5)
    assert (result["batches"], result["tokens"]) == (3, 5 * 63)
    # equal rows: the token mean is the mean of batch means, except a last batch of one row
    assert result["token_perplexity"] != pytest.approx(result["perplexity"], rel=1e-4)
    single = batch_mean_perplexity(session, "val", batch_size=1)
    assert single["perplexity"] == pytest.approx(result["token_perplexity"], rel=1e-6)


def test_run_writes_expected_beside_measured(files, runs, capsys):
    train, test = files
    argv = ["reproduce", "gpt2-lora", "--model", "tiny-gpt2", "--corpus", str(train),
            "--eval-corpus", str(test), "--max-examples", "4", "--epochs", "1",
            "--max-length", "64", "--pairing", "matched", "--name", "r"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1.583" in out and "106,264" in out and "r: done" in out
    result = json.loads((runs / "r" / "reproduction.json").read_text())
    config = json.loads((runs / "r" / "config.json").read_text())
    assert config["train"]["steps"] == 4 and config["data"]["eval_corpus"] == str(test)
    paper = {"perplexity": 1.583, "trainable_params": 106_264,
             "per_epoch": [1.60081, 1.58768, 1.58481]}  # fmt: skip
    assert result["expected"]["qpa-lora"] == paper
    got = result["measured"]
    assert result["state"] == "done" and got["steps"] == 4
    assert got["trainable_params"] == result["counted"]["qpa"]  # the counted tiny-gpt2 figure
    assert (got["test_batches"], got["test_tokens"]) == (3, 5 * 63)
    assert [e["epoch"] for e in got["per_epoch"]] == [1]
    assert 1 < got["test_perplexity"] < 1e4
    # the exported adapter gives the training loop's own last test figure
    assert got["test_perplexity_token_mean"] == pytest.approx(got["test_perplexity_in_training"])
    assert (runs / "r" / "adapter" / "adapter_config.json").is_file()


def test_hub_data_fails_fast_and_clearly_offline(runs, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: no Hub here
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                 "ALL_PROXY", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    start = time.monotonic()
    assert main(["reproduce", "gpt2-lora"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert "dataset 'Salesforce/wikitext'" in err and "network connection" in err
    assert not runs.exists()  # nothing written
