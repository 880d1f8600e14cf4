"""Estimates before launch: `train --dry-run` and `reproduce --dry-run` project the wall time and
peak memory on this device from a short measured warm-up, label them as an estimate, and write
nothing (the rows a warm-up computes stay in memory); without the model on disk there is none."""

import pytest

from qpa.cli.main import main
from qpa.training.estimate import (
    WARMUP_STEPS,
    data_work,
    describe_warmup,
    warmup_blocker,
    warmup_estimate,
)
from qpa.training.loop import train
from tests.tiny_run import TINY_RUN

CONFIG = TINY_RUN.replace(
    data=TINY_RUN.data.replace(max_examples=60, test_fraction=0.1),
    train=TINY_RUN.train.replace(steps=40, eval_every=10, device="cpu"),
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.chatterbot
def test_the_projection_adds_up_the_measured_parts(home):
    cold = warmup_estimate(CONFIG)
    assert not (home / "home").exists()  # the warm-up stored no rows, measured nothing to disk
    t = CONFIG.train
    assert cold["steps"] == t.steps and cold["train_s"] == pytest.approx(t.steps * cold["step_s"])
    assert cold["evaluations"] == t.evaluations + 2  # the start's and the base model's too
    rows = cold["evaluations"] * cold["val_rows"] + cold["test_rows"]
    assert cold["test_rows"] > 0 and cold["eval_s"] == pytest.approx(rows * cold["eval_s_per_row"])
    assert cold["uncached_tokens"] == data_work(CONFIG)["uncached_tokens"] > 0
    assert cold["cache_s"] == pytest.approx(cold["uncached_tokens"] / cold["row_tokens_per_s"])
    parts = ("load_s", "cache_s", "train_s", "eval_s")
    assert cold["total_s"] == pytest.approx(sum(cold[k] for k in parts))
    assert cold["ram_bytes"] > 50 * 2**20 and cold["gpu_bytes"] is None  # the CPU here
    train(CONFIG.replace(train=CONFIG.train.replace(steps=2, eval_every=2)))  # caches rows
    warm = warmup_estimate(CONFIG)
    assert warm["uncached_tokens"] < cold["uncached_tokens"] and warm["cache_s"] < cold["cache_s"]


@pytest.mark.chatterbot
def test_a_train_dry_run_prints_the_estimate_and_writes_nothing(home, capsys):
    runs = home / "runs"
    argv = ["train", "--dry-run", "--model", "tiny-llama", "--topics", "ai", "--steps", "30",
            "--chunk-size", "64", "--depth", "2", "--device", "cpu", "--runs-dir", str(runs)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"estimate (projected from a {WARMUP_STEPS}-step warm-up on cpu, not a measurement" in out
    assert "wall time about " in out and "30 steps" in out and "GiB of RAM" in out
    assert out.rstrip().endswith("dry run: nothing trained, nothing written")
    assert not runs.exists() and not (home / "home").exists()


def test_no_estimate_without_the_model_on_disk(home, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))  # an empty Hub cache
    config = CONFIG.replace(model=CONFIG.model.replace(model="openai-community/gpt2"))
    assert "is not downloaded yet" in warmup_blocker(config)
    assert warmup_blocker(CONFIG) is None
    assert main(["reproduce", "gpt2-lora", "--dry-run"]) == 0
    assert "estimate: none before a run (`model` = 'openai-community/gpt2' is not downloaded" in (
        capsys.readouterr().out
    )


def test_the_estimate_reads_as_one_and_names_the_gpu_memory():
    estimate = {"device": "cuda:0", "warmup_steps": 3, "total_s": 3725.0, "load_s": 20.0,
                "cache_s": 0.0, "train_s": 3600.0, "eval_s": 105.0, "steps": 1000, "step_s": 3.6,
                "evaluations": 5, "ram_bytes": 3 * 2**30, "gpu_bytes": 2**33}  # fmt: skip
    text = describe_warmup(estimate)
    assert text.startswith("estimate (projected from a 3-step warm-up on cuda:0, not a measurement")
    assert "wall time about 1:02:05: loading 0:20, 1,000 steps 1:00:00 (3.600 s each)" in text
    assert "caching rows" not in text and "3.00 GiB of RAM and 8.00 GiB of GPU memory" in text
