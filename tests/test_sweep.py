"""Sweeps: variants × seeds become runs, finished runs are reused, results are grouped over seeds."""

import json

import pytest
from tiny_run import TINY_RUN as BASE

from qpa.cli.main import main
from qpa.runs.store import list_runs
from qpa.studies.results import COMPARED, label, markdown_table, run_record, summarize
from qpa.studies.sweep import sweep, variant_config


@pytest.mark.chatterbot
def test_sweep_groups_seeds_and_compares_with_lora(tmp_path):
    rows = sweep(BASE, ["lora", "qpa", "qpa-gelu"], [0, 1], prefix="t", root=tmp_path)
    qpa_label, train = "qpa-lora chunk_size=64 depth=2", "steps=2 batch_size=4"
    assert [r["label"] for r in rows] == [
        f"lora {train}", f"{qpa_label} activation=gelu {train}", f"{qpa_label} {train}"]  # fmt: skip
    lora, gelu, qpa = rows  # equal parameters: ordered by label
    assert lora["seeds"] == qpa["seeds"] == [0, 1] and lora["vs_lora_params"] == 1.0
    assert qpa["vs_lora_params"] == pytest.approx(qpa["params"] / lora["params"])
    records = [run_record(r) for r in list_runs(tmp_path)]
    own = [r["perplexity"] for r in records if r["label"] == f"{qpa_label} {train}"]
    assert qpa["perplexity"] == pytest.approx(sum(own) / 2)
    assert qpa["vs_lora_perplexity"] == pytest.approx(
        100 * (qpa["perplexity"] / lora["perplexity"] - 1)
    )
    table = markdown_table(rows)
    assert table.count("\n") == 6 and f"| {qpa_label} activation=gelu {train} | chatterbot (ai)" in table
    assert table.endswith(COMPARED) and "seed set" in COMPARED


@pytest.mark.chatterbot
def test_a_second_sweep_reuses_finished_runs(tmp_path):
    sweep(BASE, ["qpa"], [0], prefix="t", root=tmp_path)
    metrics = tmp_path / "t-qpa-s0" / "metrics.jsonl"
    before = metrics.read_text()
    rows = sweep(BASE, ["qpa"], [0], prefix="t", root=tmp_path)
    assert metrics.read_text() == before and rows[0]["runs"] == ["t-qpa-s0"]
    with pytest.raises(ValueError, match="`prefix`: run 't-qpa-s0' exists with another config"):
        sweep(BASE.replace(train=BASE.train.replace(steps=3)), ["qpa"], [0], "t", tmp_path)


def test_bad_sweeps_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="`variants` entry 'nope'"):
        sweep(BASE, ["nope"], [0], root=tmp_path)
    with pytest.raises(ValueError, match="`variants` and `seeds`"):
        sweep(BASE, ["qpa"], [], root=tmp_path)
    assert not list(tmp_path.iterdir())


def test_variants_override_the_base_and_labels_name_what_differs():
    config = variant_config(BASE, "lora", seed=3)
    assert (config.adapter.method, config.train.seed, config.train.lr) == ("lora", 3, 1e-2)
    assert "depth=2 fourier_features=16 steps=2" in label(variant_config(BASE, "qpa-fourier", 0))
    assert summarize([]) == []


@pytest.mark.chatterbot
def test_cli_sweep_prints_the_table_and_json(tmp_path, capsys):
    args = ["sweep", "--model", "tiny-llama", "--rank", "2", "--chunk-size", "64", "--depth", "2",
            "--topics", "ai", "--max-length", "48", "--max-examples", "24", "--steps", "2",
            "--batch-size", "4", "--runs-dir", str(tmp_path), "--variants", "lora,qpa"]  # fmt: skip
    assert main([*args, "--markdown", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr().out
    assert "| lora steps=2 batch_size=4 |" in out and out.strip().endswith((tmp_path / "t.md").read_text().strip())
    assert main([*args, "--json"]) == 0  # every run reused: nothing but the JSON is printed
    rows = json.loads(capsys.readouterr().out)
    assert [r["label"].split()[0] for r in rows] == ["lora", "qpa-lora"]
    assert main(["sweep", "--list"]) == 0 and "qpa-gelu" in capsys.readouterr().out
    assert main([*args, "--seeds", "x"]) == 2
    assert "`seeds` = 'x'" in capsys.readouterr().err
