"""The streamed row cache: equal to the bulk rows, resumable after a kill, shared under a lock,
and the shared-prefix rows equal to the unshared ones."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from qpa.config import DataConfig
from qpa.data.splits import build_splits
from qpa.models.loading import load_model
from qpa.training import row_stream
from qpa.training.row_stream import RowStream
from qpa.training.rows import backbone_rows, example_rows, run_prefix, shared_prefix

DATA = DataConfig(topics=("ai", "science"), max_length=64, max_examples=60)


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def model_and_split(request):
    model, tok = load_model(request.param)
    return model, build_splits(DATA, tok).train


@pytest.mark.parametrize("perplexity", ["masked", "paper"])
def test_shared_prefix_rows_equal_unshared(model_and_split, perplexity):
    model, encoded = model_and_split
    prefix = run_prefix(model, encoded, perplexity)
    assert prefix is not None and prefix.length == shared_prefix(encoded, perplexity) > 0
    examples = torch.arange(len(encoded))
    shared = example_rows(model, encoded, examples, perplexity, prefix)
    plain = example_rows(model, encoded, examples, perplexity)
    assert shared.shape == plain.shape
    torch.testing.assert_close(shared, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("perplexity", ["masked", "paper"])
def test_streamed_rows_equal_bulk_rows(model_and_split, perplexity, monkeypatch, tmp_path):
    model, encoded = model_and_split
    monkeypatch.setattr(row_stream, "GROUP_TOKENS", 300)  # several groups
    bulk = backbone_rows(model, encoded, perplexity)
    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(1))
    path = tmp_path / "rows-k.safetensors"
    stream = RowStream(model, encoded, perplexity, path, order)
    stream.ensure(order[:4])
    assert 4 <= stream.n_ready < stream.n_examples  # only a group was computed
    stream.ensure_all()
    torch.testing.assert_close(stream.rows.hidden, bulk.hidden, rtol=0, atol=1e-6)
    assert torch.equal(stream.rows.targets, bulk.targets)
    assert path.is_file() and not stream.parts_dir.exists()  # merged into today's single file
    again = RowStream(model, encoded, perplexity, path)
    again.ensure(torch.tensor([0]))
    assert again.n_ready == again.n_examples and again.computed_tokens == 0  # reused whole
    assert torch.equal(again.rows.hidden, stream.rows.hidden)


CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path
    import torch
    from qpa.config import DataConfig
    from qpa.data.splits import build_splits
    from qpa.models.loading import load_model
    from qpa.training import row_stream

    path, kill_after, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    row_stream.GROUP_TOKENS = 300
    model, tok = load_model("tiny-llama")
    encoded = build_splits(DataConfig(**json.loads(sys.argv[4])), tok).train
    groups = []

    def progress(done, total, eta, rate):
        groups.append(done)
        if len(groups) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    stream = row_stream.RowStream(model, encoded, "masked", path, progress=progress)
    while not (Path(out).parent / "go").exists():  # start together with the other child
        time.sleep(0.01)
    stream.ensure_all()
    json.dump({"tokens": stream.computed_tokens, "groups": len(groups)}, open(out, "w"))
    """
)


def _child(path, kill_after, out):
    data = json.dumps({"topics": list(DATA.topics), "max_length": 64, "max_examples": 60})
    argv = [sys.executable, "-c", CHILD, str(path), str(kill_after), str(out), data]
    return subprocess.Popen(argv)


def _tiny_train():
    model, tok = load_model("tiny-llama")
    return model, build_splits(DATA, tok).train


def test_a_kill_mid_cache_resumes_cleanly(tmp_path):
    path = tmp_path / "rows-k.safetensors"
    (tmp_path / "go").touch()
    child = _child(path, 3, tmp_path / "never.json")
    assert child.wait(timeout=120) == -9  # killed after its third group
    parts = list(path.with_suffix(".parts").glob("part-*.safetensors"))
    assert len(parts) == 3 and not path.exists()
    (path.with_suffix(".parts") / ".tmp-part-torn.safetensors").write_bytes(b"\0" * 10)
    stored = _part_examples(parts)
    model, encoded = _tiny_train()
    stream = RowStream(model, encoded, "masked", path)
    stream.ensure_all()
    done_before = sum(int(stream.widths[ex].sum()) for ex in stored)
    assert stream.computed_tokens == int(stream.widths.sum()) - done_before > 0
    bulk = backbone_rows(model, encoded, "masked")
    torch.testing.assert_close(stream.rows.hidden, bulk.hidden, rtol=0, atol=1e-6)
    assert path.is_file() and not path.with_suffix(".parts").exists()


def _part_examples(parts):
    from safetensors.torch import load_file

    return [load_file(p)["examples"] for p in parts]


@pytest.mark.skipif(row_stream.fcntl is None, reason="no flock on this platform")
def test_two_concurrent_runs_compute_each_row_once(tmp_path):
    path = tmp_path / "rows-k.safetensors"
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    children = [_child(path, 0, out) for out in outs]
    (tmp_path / "go").touch()
    assert [c.wait(timeout=180) for c in children] == [0, 0]
    results = [json.loads(out.read_text()) for out in outs]
    model, encoded = _tiny_train()
    stream = RowStream(model, encoded, "masked", path)
    stream.ensure(torch.tensor([0]))
    assert stream.computed_tokens == 0 and stream.n_ready == stream.n_examples
    assert sum(r["tokens"] for r in results) == int(stream.widths.sum())  # each row once
    bulk = backbone_rows(model, encoded, "masked")
    torch.testing.assert_close(stream.rows.hidden, bulk.hidden, rtol=0, atol=1e-6)


@pytest.mark.parametrize("perplexity", ["masked", "paper"])
@pytest.mark.parametrize("cached", [True, False], ids=["cached-head", "full-forward"])
def test_an_evaluation_computes_the_shared_prefix_rows_once_and_equals_every_row(
    perplexity, cached, monkeypatch, tmp_path
):
    from qpa.config import ModelConfig, QPAConfig, RunConfig, TrainConfig
    from qpa.training import loop, rows
    from qpa.training.session import prepare

    config = RunConfig(
        model=ModelConfig("tiny-llama"), qpa=QPAConfig(chunk_size=64, depth=2), data=DATA,
        train=TrainConfig(perplexity=perplexity, cache_backbone=cached),
    )  # fmt: skip
    session = prepare(config, cache_dir=tmp_path)
    val = session.rows["val"]
    alike = rows.alike_rows(session.splits.val, val, perplexity)
    assert alike == shared_prefix(session.splits.val, perplexity) - 1 > 0
    computed = []
    real_split_loss = loop.split_loss

    def counting(*args, **kw):
        nll, flags = real_split_loss(*args, **kw)
        computed.append(len(nll))
        return nll, flags

    monkeypatch.setattr(loop, "split_loss", counting)
    once = loop.evaluate_split(session, batch_size=8)
    assert sum(computed) == len(val.targets) - (val.n_examples - 1) * alike
    monkeypatch.setattr(loop, "alike_rows", lambda *a: 0)
    every = loop.evaluate_split(session, batch_size=8)
    assert once["tokens"] == every["tokens"] == len(val.targets)
    for key in ("loss", "assistant_loss"):
        assert once[key] == pytest.approx(every[key], rel=1e-6)
