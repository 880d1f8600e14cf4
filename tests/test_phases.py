"""Honest waiting: a run names its phases (validation rows first, training rows streamed during
the first steps), records its throughput, and the next launch is estimated from it."""

import pytest

from app.handlers.train import estimate_text
from app.state import Studio
from qpa.runs.store import create_run
from qpa.training import row_stream
from qpa.training.estimate import (
    data_work,
    describe_estimate,
    estimate_launch,
    estimate_run,
    measured,
)
from qpa.training.loop import train
from tests.tiny_run import TINY_RUN, tiny_form

CONFIG = TINY_RUN.replace(
    data=TINY_RUN.data.replace(max_examples=60),
    train=TINY_RUN.train.replace(steps=6, eval_every=3),
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(row_stream, "GROUP_TOKENS", 200)  # several groups on tiny data
    return tmp_path


def test_phases_validation_rows_first_then_training_rows_streamed(home):
    run = create_run(CONFIG, home / "runs")
    events = []
    train(CONFIG, run, callbacks=[events.append])
    kinds = [(e["event"], (e.get("rows") or {}).get("split")) for e in events]
    assert events[0]["phase"] == "loading the model"
    first_eval = kinds.index(("eval", None))
    assert ("prepare", "val") in kinds[:first_eval] and ("prepare", "train") not in kinds[:first_eval]
    val_done = [e["rows"] for e in events[:first_eval] if e["event"] == "prepare" and e["rows"]]
    assert val_done[-1]["done"] == val_done[-1]["total"]
    train_rows = [e["rows"] for e in events if (e.get("rows") or {}).get("split") == "train"]
    assert len(train_rows) >= 2 and train_rows[0]["done"] < train_rows[0]["total"]  # streamed
    assert train_rows[0]["eta_s"] is not None and train_rows[0]["tokens_per_s"] > 0
    status = run.status()
    assert status["phase"] == "training" and status["rows"]["split"] == "train"


def test_estimate_comes_from_the_measured_run(home):
    assert estimate_run(CONFIG)["total_s"] is None  # nothing measured on this machine yet
    assert "no estimate yet" in describe_estimate(estimate_run(CONFIG))
    before = data_work(CONFIG)["uncached_tokens"]
    train(CONFIG)  # 6 steps of 4 examples: the rows of the other training examples stay uncached
    after = data_work(CONFIG)["uncached_tokens"]
    assert 0 < after < before
    seen = measured("tiny-llama")
    assert seen["row_tokens_per_s"] > 0 and seen["step_s_per_example"]["qpa-lora"] > 0
    est = estimate_run(CONFIG)
    assert est["convert_s"] == 0.0 and est["cache_s"] == pytest.approx(
        after / seen["row_tokens_per_s"]
    )
    steps = CONFIG.train.steps * CONFIG.train.batch_size * seen["step_s_per_example"]["qpa-lora"]
    assert est["train_s"] >= steps and est["total_s"] == pytest.approx(
        est["load_s"] + est["cache_s"] + est["train_s"]
    )
    other = CONFIG.replace(data=CONFIG.data.replace(max_examples=50))
    assert describe_estimate(est).startswith("about ")
    both = estimate_launch([other, other.replace(adapter=other.adapter.replace(method="lora"))])
    assert both["missing"] == ["training"]  # no LoRA run measured its steps yet


def test_train_tab_shows_the_estimate(home):
    studio = Studio.create(runs_root=home / "runs", demo=False)
    assert estimate_text(studio, tiny_form()).startswith("Estimate: no estimate yet")
    assert "none until the form is valid" in estimate_text(studio, tiny_form(steps=0))


def test_a_cli_run_records_its_start_up_and_the_estimate_counts_it(home):
    import json
    import os
    import subprocess
    import sys

    config = home / "config.json"
    config.write_text(json.dumps(CONFIG.to_dict()))
    env = {**os.environ, "QPA_HOME": str(home / "home")}
    cli = [sys.executable, "-m", "qpa", "train", "--config", str(config), "--runs-dir", str(home / "runs")]  # fmt: skip
    subprocess.run(cli, env=env, check=True, capture_output=True, timeout=300)
    start = measured("tiny-llama")["start_s"]
    assert 0.2 < start < 120  # the interpreter and the imports, at least
    est = estimate_run(CONFIG)
    assert est["start_s"] == start and est["total_s"] == pytest.approx(
        sum(est[k] or 0.0 for k in ("start_s", "convert_s", "load_s", "cache_s", "train_s"))
    )
    assert "starting 0:" in describe_estimate(est)
    both = estimate_launch([CONFIG, CONFIG])
    assert both["start_s"] == pytest.approx(2 * start)  # a process for each run
