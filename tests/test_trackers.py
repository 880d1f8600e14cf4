"""Optional trackers log the run folder's metrics: TensorBoard and trackio where installed
(skipped otherwise, saying why); a tracker that is not installed is refused before any run
folder exists."""

import importlib.util
import json

import pytest

from qpa.cli.main import main

TINY = ["--model", "tiny-llama", "--steps", "3", "--eval-every", "2", "--batch-size", "4",
        "--max-length", "16", "--chunk-size", "64", "--depth", "2"]  # fmt: skip


def tiny_args(tmp_path, name: str, tracker: str) -> list[str]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Line {i} about qubits." for i in range(30)))
    runs = str(tmp_path / "runs")
    return [
        "train",
        *TINY,
        "--corpus",
        str(corpus),
        "--report-to",
        tracker,
        "--name",
        name,
        "--runs-dir",
        runs,
    ]


def folder_metrics(tmp_path, name: str, split: str, key: str) -> list[tuple[int, float]]:
    lines = (tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [(r["step"], r[key]) for r in records if r.get("split") == split]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_a_missing_tracker_is_refused_before_any_folder(tmp_path, capsys):
    assert main(tiny_args(tmp_path, "w", "wandb")) == 2
    assert (
        "`report_to` = 'wandb' needs the wandb package: pip install wandb"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "runs" / "w").exists()


def test_tensorboard_gets_the_run_folders_metrics(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is optional (pip install tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(tiny_args(tmp_path, "tb", "tensorboard")) == 0
    events = EventAccumulator(str(tmp_path / "runs" / "tb" / "tracker"))
    events.Reload()
    for split, key in (("train", "loss"), ("train", "lr"), ("val", "perplexity")):
        logged = [(e.step, e.value) for e in events.Scalars(f"{split}/{key}")]
        expected = folder_metrics(tmp_path, "tb", split, key)
        assert [s for s, _ in logged] == [s for s, _ in expected]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)


def test_trackio_gets_the_run_folders_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    pytest.importorskip("trackio", reason="trackio is optional (pip install trackio)")
    from trackio.sqlite_storage import SQLiteStorage

    assert main(tiny_args(tmp_path, "tio", "trackio")) == 0
    logs = SQLiteStorage.get_logs("qpa-studio", "tio")
    logged = [(r["step"], r["train/loss"]) for r in logs if "train/loss" in r]
    expected = folder_metrics(tmp_path, "tio", "train", "loss")
    assert [s for s, _ in logged] == [s for s, _ in expected] == [1, 2, 3]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)
