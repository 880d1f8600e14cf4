"""The training plan and its warnings: one default data selection for the app, the CLI and the
config; epochs shown; overfitting and noisy-validation warnings before launch (CLI dry run,
Train tab), and a rising-perplexity warning on the run card during training."""

import warnings

import pytest
from tiny_run import tiny_form

from app.handlers import train as h
from app.handlers.data import data_config
from app.handlers.progress import run_card
from app.settings import DEMO, FULL
from app.state import Studio
from app.tabs.train import start_values
from qpa.cli.main import main
from qpa.config import DataConfig, RunConfig, TrainConfig
from qpa.runs.store import create_run
from qpa.training.plan import TrainingPlan, plan_training, rising_warning

OLD_APP_TOPICS = ("ai", "computers", "science")  # the Train tab's defaults before issue 14


def test_the_app_starts_from_the_configs_defaults():
    form = {**start_values(FULL), "topics": []}  # what the Train tab shows before any edit
    assert h.train_config(form) == TrainConfig()
    assert data_config(form) == DataConfig()
    demo = start_values(DEMO)  # a capped demo: the same data, within its caps
    assert (demo["steps"], demo["max_examples"]) == (DEMO.steps, DEMO.max_examples)
    assert "450** train / 50 validation" in h.plan_text(demo) and "⚠️" not in h.plan_text(demo)


def test_the_default_plan_is_a_bit_more_than_one_pass_over_all_topics():
    plan = plan_training(RunConfig())
    assert (plan.n_train, plan.n_val) == (1_823, 202)
    assert plan.epochs == pytest.approx(300 * 8 / 1_823) and plan.warnings() == []
    assert "1,823 train / 202 validation examples" in plan.line() and "1.32 epochs" in plan.line()
    text = h.plan_text({**start_values(FULL), "topics": []})
    assert "**1,823** train" in text and "**1.32 epochs**" in text and "⚠️" not in text


def test_many_passes_over_few_examples_warn_with_the_numbers_and_the_fix():
    plan = plan_training(RunConfig(data=DataConfig(topics=OLD_APP_TOPICS)))
    overfit, noisy = plan.warnings()
    assert (plan.n_train, plan.n_val) == (129, 14)
    assert overfit.startswith("18.6 passes over only 129 training examples: likely to overfit")
    assert "leave `topics` empty" in overfit and "at most 80 `steps`" in overfit
    assert noisy.startswith("Only 14 validation examples") and "`val_fraction`" in noisy


@pytest.mark.parametrize(
    "n_train, n_val, steps, expected",
    [(499, 60, 320, 1), (500, 60, 1_000, 0), (499, 60, 300, 0), (5_000, 49, 10, 1)],
)
def test_each_warning_has_its_threshold(n_train, n_val, steps, expected):
    plan = TrainingPlan(n_train, n_val, TrainConfig(steps=steps, batch_size=8))
    assert len(plan.warnings()) == expected


def test_dry_run_prints_the_plan_and_warnings_and_writes_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["train", "--dry-run", "--runs-dir", str(runs), "--topics", ",".join(OLD_APP_TOPICS)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "129 train / 14 validation examples; 300 steps × batch 8 = 18.60 epochs" in out
    assert "warning: 18.6 passes over only 129" in out and "warning: Only 14 validation" in out
    assert main(["train", "--dry-run", "--runs-dir", str(runs)]) == 0
    assert "1.32 epochs" in capsys.readouterr().out
    assert not runs.exists()


def test_launching_an_overfitting_plan_warns_in_the_app(tmp_path, monkeypatch):
    studio = Studio.create(runs_root=tmp_path, demo=False)
    monkeypatch.setattr(studio.jobs, "schedule", lambda: None)  # queue only: nothing trains
    values = tiny_form(steps=200, batch_size=8, max_examples=0)  # 200 × 8 over 95 `ai` examples
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h.on_launch(studio, values)
    shown = [str(w.message) for w in caught]
    assert any(m.startswith("16.8 passes over only 95 training examples") for m in shown), shown
    assert any(m.startswith("Only 10 validation examples") for m in shown), shown
    plan = h.on_plan({k: values[k] for k in h.PLAN_FIELDS})
    assert "**16.84 epochs**" in plan and plan.count("⚠️") == 2


def test_the_run_card_warns_when_validation_perplexity_keeps_rising(tmp_path):
    run = create_run(RunConfig.from_dict({"model": {"model": "tiny-llama"}}), tmp_path, name="r")
    run.set_status("running", step=100)
    card = Studio.create(runs_root=tmp_path, demo=False)
    for step, ppl in ((0, 40.0), (25, 30.0), (50, 31.0), (75, 33.0)):
        run.append_metrics({"step": step, "split": "val", "loss": 1.0, "perplexity": ppl})
    assert "rose" not in run_card(card, "r")  # two rises: not yet
    run.append_metrics({"step": 100, "split": "val", "loss": 1.0, "perplexity": 36.0})
    text = run_card(card, "r")
    assert "Validation perplexity rose 3 evaluations in a row (30.000 → 36.000)" in text
    assert "best step so far is 25" in text and "best step 25: all tokens 30.000" in text
    assert rising_warning([3.0, 2.0, 2.5, 2.4, 2.6], [0, 1, 2, 3, 4]) is None  # a dip resets
