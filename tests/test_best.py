"""Keep the best: a run exports the step with the best validation loss, says which, compares it
with the base model (measured once per data selection, cached), stops early on request, and
flags a run that ends worse than the base model on its card, in tables and in the CLI."""

import json

import pytest
from tiny_run import TINY_RUN

from app.handlers.progress import run_card, series
from app.handlers.runs import table_rows
from app.state import Studio
from qpa.cli.main import main
from qpa.runs.store import create_run, open_run
from qpa.training.loop import evaluate, train

# 30 steps × 4 over 11 examples: 11 passes, the validation loss bottoms out mid-run (measured)
OVERFIT = TINY_RUN.replace(
    train=TINY_RUN.train.replace(steps=30, eval_every=5, lr=0.05),
    data=TINY_RUN.data.replace(max_examples=12),
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def digits_corpus(path) -> str:
    """Chat data of random numbers: nothing like the chatterbot replies a run trains on."""
    lines = [
        {"messages": [{"role": "user", "content": "count"},
                      {"role": "assistant", "content": " ".join(str(7919 * i * k % 99991)
                                                                 for k in range(1, 9))}]}
        for i in range(1, 31)
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(x) for x in lines))
    return str(path)


def test_the_exported_adapter_is_the_best_step_not_the_last(tmp_path, home):
    run = create_run(OVERFIT, tmp_path / "runs", name="r")
    result = train(OVERFIT, run)
    val = {m["step"]: m for m in run.metrics("val")}
    best = min(val, key=lambda s: val[s]["assistant_loss"])
    assert result["best_step"] == result["exported_step"] == best
    assert 0 < best < 30, "this recipe's validation loss bottoms out mid-run"
    assert result["val_assistant_perplexity"] == val[best]["assistant_perplexity"]
    assert result["last_val_assistant_perplexity"] == val[30]["assistant_perplexity"]
    exported = evaluate(OVERFIT, run.adapter_dir)
    assert exported["assistant_loss"] == pytest.approx(val[best]["assistant_loss"], rel=1e-5)
    assert exported["assistant_loss"] != pytest.approx(val[30]["assistant_loss"], rel=1e-3)
    meta = json.loads((run.path / "best.json").read_text())
    assert meta["step"] == best and run.summary()["best_step"] == best


def test_base_perplexity_is_measured_once_per_data_selection(tmp_path, home):
    first = train(OVERFIT.replace(train=OVERFIT.train.replace(steps=2)))
    cached = list((home / "features").glob("base-*.json"))
    assert len(cached) == 1
    base = json.loads(cached[0].read_text())
    assert first["base_perplexity"] == base["assistant_perplexity"]
    lora = OVERFIT.replace(adapter=OVERFIT.adapter.replace(method="lora"))
    assert train(lora.replace(train=lora.train.replace(steps=2)))["base_perplexity"] == (
        base["assistant_perplexity"]
    )  # the same data: reused, not measured again
    assert len(list((home / "features").glob("base-*.json"))) == 1
    assert evaluate(OVERFIT)["assistant_perplexity"] == pytest.approx(
        base["assistant_perplexity"]
    )  # the cached number is the base model's own
    train(OVERFIT.replace(data=OVERFIT.data.replace(max_examples=16), train=OVERFIT.train.replace(steps=2)))
    assert len(list((home / "features").glob("base-*.json"))) == 2  # other data: measured


def test_a_run_worse_than_the_base_model_is_flagged_everywhere(tmp_path, home, capsys):
    """Many passes over 11 examples, validated on numbers: every step is worse than the base."""
    config = OVERFIT.replace(
        data=OVERFIT.data.replace(eval_corpus=digits_corpus(tmp_path / "digits.jsonl"))
    )
    root = tmp_path / "runs"
    run = create_run(config, root, name="worse.qpa")
    result = train(config, run)
    assert run.status()["state"] == "done" and result["worse_than_base"]
    val = {m["step"]: m["assistant_perplexity"] for m in run.metrics("val")}
    assert min(val.values()) > result["base_perplexity"]
    assert result["exported_step"] == min(val, key=val.get)  # still the best one exported
    studio = Studio.create(runs_root=root, demo=False)
    card = run_card(studio, "worse.qpa")
    assert "Worse than the base model" in card and f"exported step {result['exported_step']}" in card
    assert table_rows(studio)[0][-1] == "done · worse than the base model"
    assert main(["runs", "--runs-dir", str(root)]) == 0
    assert "done (worse than the base model)" in capsys.readouterr().out
    assert main(["runs", "show", "worse.qpa", "--runs-dir", str(root)]) == 0
    assert "; worse than the base model" in capsys.readouterr().out
    curve = series(studio, ["worse.qpa"])[0]
    assert curve["base_assistant"] == result["base_perplexity"]
    assert curve["best_step"] == result["exported_step"]


def test_patience_stops_early_and_keeps_the_best(tmp_path, home):
    config = OVERFIT.replace(train=OVERFIT.train.replace(steps=200, patience=2))
    run = create_run(config, tmp_path / "runs", name="early")
    result = train(config, run)
    val = [m["step"] for m in run.metrics("val")]
    assert result["stopped_early"] and result["state"] == "done" and result["step"] < 200
    assert val[-1] == result["step"] == result["best_step"] + 2 * 5  # 2 evaluations later
    assert open_run("early", tmp_path / "runs").summary()["best_step"] == result["best_step"]


def test_the_best_survives_a_resume(tmp_path, home):
    """Stopped mid-run and resumed: the best so far comes back from the run folder."""
    root = tmp_path / "runs"
    run = create_run(OVERFIT, root, name="resumed")
    stop_at = {"step": 10}  # an evaluation step: the stop adds no extra evaluation

    def stop(event):
        if event["event"] == "step" and event["step"] == stop_at["step"]:
            run.request_stop()

    first = train(OVERFIT, run, callbacks=[stop])
    assert first["state"] == "cancelled" and run.has_best()
    run.clear_stop()
    resumed = train(OVERFIT, run, resume=True)
    straight = train(OVERFIT, create_run(OVERFIT, root, name="straight"))
    assert resumed["best_step"] == straight["best_step"]
    assert resumed["val_assistant_loss"] == pytest.approx(straight["val_assistant_loss"], rel=1e-5)
