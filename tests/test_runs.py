"""The run-directory contract: ids, never overwriting, atomic JSON, metrics, status, state."""

import json
import os
import subprocess
import sys

import pytest
import torch

from qpa.config import AdapterConfig, RunConfig, TrainConfig
from qpa.constants import ADAPTER_FILES
from qpa.runs.run import INTERRUPTED, STATES, atomic_write_json
from qpa.runs.store import create_run, list_runs, open_run, runs_root


@pytest.fixture
def config():
    return RunConfig(adapter=AdapterConfig(method="lora"), train=TrainConfig(steps=7))


def test_create_writes_config_versions_and_queued_status(tmp_path, config):
    run = create_run(config, tmp_path)
    assert run.path.parent == tmp_path
    assert run.id.split("-")[2] == "lora" and len(run.id.split("-")[-1]) == 4
    assert json.loads((run.path / "config.json").read_text()) == config.resolved().to_dict()
    assert open_run(run.id, tmp_path).config == config.resolved()  # lr resolved to lora's default
    assert {"python", "torch", "transformers", "peft", "qpa", "platform"} <= set(
        json.loads((run.path / "versions.json").read_text())
    )
    status = run.status()
    assert status["state"] == "queued" and status["total_steps"] == 7 and status["error"] is None


def test_runs_root_from_env(tmp_path, monkeypatch, config):
    monkeypatch.setenv("QPA_RUNS", str(tmp_path / "env-runs"))
    assert runs_root() == tmp_path / "env-runs"
    assert runs_root(tmp_path) == tmp_path
    run = create_run(config, name="x")
    assert run.path == tmp_path / "env-runs" / "x"


def test_a_run_is_never_overwritten(tmp_path, config):
    run = create_run(config, tmp_path, name="mine")
    run.set_status("done")
    with pytest.raises(ValueError, match="`name`.*already exists"):
        create_run(config, tmp_path, name="mine")
    assert open_run("mine", tmp_path).status()["state"] == "done"
    ids = {create_run(config, tmp_path).id for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", ".hidden", "", "x y", "a..b", "é"])
def test_bad_ids_are_rejected(tmp_path, config, bad):
    with pytest.raises(ValueError, match="`run`"):
        open_run(bad, tmp_path)
    with pytest.raises(ValueError, match="`name`"):
        create_run(config, tmp_path, name=bad)
    assert not (tmp_path / "etc").exists()


def test_unknown_run_lists_existing_ids(tmp_path, config):
    create_run(config, tmp_path, name="alpha")
    with pytest.raises(ValueError, match="`run` = 'beta' not found.*alpha"):
        open_run("beta", tmp_path)


def test_list_runs_newest_first_and_skips_junk(tmp_path, config):
    first = create_run(config, tmp_path, name="first")
    second = create_run(config, tmp_path, name="second")
    atomic_write_json(first.path / "status.json", {**first.status(), "created": "2000-01-01"})
    (tmp_path / "junk").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "unknown-key").mkdir()
    (tmp_path / "unknown-key" / "config.json").write_text('{"nope": 1}')
    (tmp_path / "file.txt").write_text("x")
    assert [r.id for r in list_runs(tmp_path)] == [second.id, first.id]
    assert list_runs(tmp_path / "missing") == []


def test_atomic_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"y": [1, 2]})
    assert json.loads(path.read_text()) == {"y": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp files left
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"y": [1, 2]}  # a failed write keeps the old file
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_metrics_round_trip_and_torn_line_is_ignored(tmp_path, config):
    run = create_run(config, tmp_path)
    run.append_metrics({"step": 1, "split": "train", "loss": 2.0})
    run.append_metrics({"step": 1, "split": "val", "loss": 1.5, "perplexity": 4.48})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "split": "tr')  # a crash mid-append
    assert [m["split"] for m in run.metrics()] == ["train", "val"]
    assert run.metrics("val") == [{"step": 1, "split": "val", "loss": 1.5, "perplexity": 4.48}]
    run.append_metrics({"step": 3, "split": "val", "loss": 1.0})  # e.g. after resuming
    assert [m["step"] for m in run.metrics()] == [1, 1, 3]
    assert run.summary()["val_perplexity"] is None  # the last val record has none


def test_dead_pid_running_reads_as_interrupted(tmp_path, config):
    run = create_run(config, tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    run.set_status("running", pid=child.pid)
    status = run.status()
    assert status["state"] == "failed" and status["error"] == INTERRUPTED
    assert json.loads((run.path / "status.json").read_text())["state"] == "running"  # not rewritten
    run.set_status("running", pid=os.getpid())
    assert run.status()["state"] == "running"
    run.set_status("running", pid=child.pid, host="another-host")
    assert run.status()["state"] == "failed"  # the free lock proves the trainer gone (H2)
    trainer = open_run(run.id, tmp_path)
    trainer.lock()  # what a live trainer holds, on any host
    try:
        assert run.status()["state"] == "running"
    finally:
        trainer.unlock()


def test_status_round_trip_and_times(tmp_path, config):
    run = create_run(config, tmp_path)
    for state in STATES:
        run.set_status(state, step=3, message=f"now {state}")
        status = open_run(run.id, tmp_path).status()
        assert (status["state"], status["step"], status["message"]) == (state, 3, f"now {state}")
        assert (status["finished"] is not None) == (state in ("done", "failed", "cancelled"))
    assert status["started"] and status["updated"]
    run.set_status("failed", error="boom")
    assert run.status()["error"] == "boom"
    with pytest.raises(ValueError, match="`state`"):
        run.set_status("paused")
    assert run.summary()["wall_time_s"] >= 0


def test_stop_file(tmp_path, config):
    run = create_run(config, tmp_path)
    assert not run.stop_requested()
    open_run(run.id, tmp_path).request_stop()
    assert run.stop_requested() and (run.path / "STOP").is_file()
    run.clear_stop()
    assert not run.stop_requested()


def test_state_round_trip(tmp_path, config):
    run = create_run(config, tmp_path)
    with pytest.raises(ValueError, match="no saved state"):
        run.load_state()
    tensors = {"w": torch.randn(3, 4), "optim.0.step": torch.tensor(5.0)}
    run.save_state(tensors, {"step": 5, "method": "lora"})
    loaded, meta = open_run(run.id, tmp_path).load_state()
    assert meta == {"step": 5, "method": "lora"}
    assert loaded.keys() == tensors.keys() and all(
        torch.equal(loaded[k], tensors[k]) for k in tensors
    )
    assert json.loads((run.path / "qpa_state.json").read_text()) == meta


def test_log_and_adapter(tmp_path, config):
    run = create_run(config, tmp_path)
    assert run.log_text() == "" and not run.has_adapter()
    for i in range(5):
        run.log(f"line {i}")
    assert run.log_text(tail_lines=2).splitlines()[-1].endswith("line 4")
    assert len(run.log_text(tail_lines=2).splitlines()) == 2
    run.adapter_dir.mkdir()
    for name in ADAPTER_FILES:
        (run.adapter_dir / name).write_text("{}")
    assert run.has_adapter() and run.summary()["has_adapter"]


def test_summary_row(tmp_path):
    run = create_run(RunConfig(), tmp_path)
    run.set_status("running", pid=os.getpid(), step=2, trainable_params=123)
    run.append_metrics({"step": 2, "split": "val", "loss": 1.0, "perplexity": 2.72})
    row = run.summary()
    assert row["method"] == "qpa-lora" and row["model"] == "smollm2" and row["chunk_size"] == 2048
    assert (row["state"], row["step"], row["total_steps"]) == ("running", 2, 300)
    assert (row["trainable_params"], row["val_perplexity"]) == (123, 2.72)


def test_launch_group_is_recorded_and_old_suffixed_folders_still_group(tmp_path, config):
    pair = [create_run(config, tmp_path, group="g1"), create_run(config, tmp_path, group="g1")]
    alone = create_run(config, tmp_path)
    assert [r.group for r in pair] == ["g1", "g1"] and alone.group == alone.id
    assert json.loads((pair[0].path / "status.json").read_text())["group"] == "g1"
    assert open_run(pair[1].id, tmp_path).group == "g1"
    for suffix in ("qpa", "lora"):  # written by the app before the group was recorded
        old = create_run(config, tmp_path, name=f"20250101-000000-ab12.{suffix}")
        status = json.loads((old.path / "status.json").read_text())
        del status["group"]
        atomic_write_json(old.path / "status.json", status)
        assert open_run(old.id, tmp_path).group == "20250101-000000-ab12"
