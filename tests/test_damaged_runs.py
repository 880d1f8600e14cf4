"""Damaged, stale and diverged runs (the reliability probe of issue #17): one bad run folder is
listed as failed with the reason and never stops the others or the queue (H3); a trainer that
is gone is detected by the run's lock whatever its pid or host say (H2); damaged adapters and
checkpoints are refused naming the file (U6, U12); a diverging run fails instead of exporting
NaN weights, and every JSON written or printed is strict (U1, U2); visitors never see a
traceback (T1)."""

import json
import os
import time
import traceback

import pytest
from tiny_run import TINY_RUN

from app.handlers import runs as runs_tab
from app.jobs import Jobs
from app.state import Studio
from qpa.cli.main import main
from qpa.runs.files import atomic_write_json, load_tensors, save_tensors
from qpa.runs.run import INTERRUPTED, NEVER_STARTED
from qpa.runs.store import create_run, open_run

TINY = ["--model", "tiny-llama", "--topics", "ai", "--max-examples", "24", "--max-length", "48",
        "--batch-size", "4", "--chunk-size", "64", "--depth", "2", "--rank", "2"]  # fmt: skip


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("QPA_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("QPA_DEBUG", raising=False)
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-step QPA run (its adapter and checkpoint), copied fresh by `good_copy`."""
    home = tmp_path_factory.mktemp("trained")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    assert main(["train", *TINY, "--steps", "2", "--eval-every", "2", "--name", "good",
                 "--runs-dir", str(home / "runs")]) == 0  # fmt: skip
    return home / "runs" / "good"


@pytest.fixture
def good_copy(trained, root):
    import shutil

    shutil.copytree(trained, root / "good", ignore=shutil.ignore_patterns(".lock"))
    return open_run("good", root)


def strict_json(text: str):
    """json.loads refusing NaN and Infinity, as JavaScript's JSON.parse does."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


def damage(run, **status):
    atomic_write_json(run.path / "status.json", {**json.loads((run.path / "status.json").read_text()), **status})


# -- H3: one damaged run never stops the listing, the tables or the queue ----------------------


DAMAGES = {
    "created-int": lambda run: damage(run, created=12345),
    "pid-huge": lambda run: damage(run, state="running", pid=10**20),
    "state-list": lambda run: damage(run, state=["done"]),
    "status-fifo": lambda run: ((run.path / "status.json").unlink(), os.mkfifo(run.path / "status.json")),
    "split-list": lambda run: run.append_metrics({"step": 1, "split": []}),
    "metrics-dir": lambda run: (run.path / "metrics.jsonl").mkdir(),
    "log-fifo": lambda run: os.mkfifo(run.path / "train.log"),
}  # fmt: skip


def test_damaged_runs_are_listed_as_failed_and_the_rest_keeps_working(root, capsys):
    for name, harm in DAMAGES.items():
        harm(create_run(TINY_RUN, root, name=name))
    queued = create_run(TINY_RUN, root, name="waiting")
    assert main(["runs"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in [*DAMAGES, "waiting"])
    assert main(["runs", "--json"]) == 0
    rows = {r["id"]: r for r in strict_json(capsys.readouterr().out)}
    assert rows["waiting"]["state"] == rows["split-list"]["state"] == "queued"
    for name in DAMAGES:
        if name not in ("log-fifo", "split-list"):  # no log in a row; a bad line is skipped
            assert rows[name]["state"] == "failed" and rows[name]["error"], name
        assert main(["runs", "show", name]) == (2 if name == "metrics-dir" else 0)
    assert "error: `run` metrics-dir: metrics.jsonl is unreadable" in capsys.readouterr().err
    assert "damaged: `created` = 12345" in rows["created-int"]["error"]
    assert "metrics.jsonl is unreadable" in rows["metrics-dir"]["error"]
    jobs = Jobs(root, max_runs=1)
    assert queued.id in jobs.queue() and jobs.training() == []  # the slot is free
    studio = Studio.create(runs_root=root, demo=True)
    assert {r[0] for r in runs_tab.table_rows(studio)} == {*DAMAGES, "waiting"}
    with pytest.raises(ValueError, match="train.log.* is not a regular file"):
        runs_tab.run_details(studio, "log-fifo")


# -- H2: a trainer that is gone, whatever its pid or host say --------------------------------------


def test_a_stale_running_run_reads_as_interrupted_and_frees_its_slot(root, capsys):
    reused = create_run(TINY_RUN, root, name="reused")  # pid reused after a reboot
    reused.set_status("running", pid=os.getppid())  # alive, but not this run's trainer
    moved = create_run(TINY_RUN, root, name="moved")  # a container restarted with a new name
    moved.set_status("running", pid=os.getppid())
    damage(moved, host="old-container")
    for run in (reused, moved):
        assert (run.status()["state"], run.status()["error"]) == ("failed", INTERRUPTED)
        assert main(["runs", "cancel", run.id]) == 0
        assert "already failed" in capsys.readouterr().out
    queued = create_run(TINY_RUN, root, name="next")
    jobs = Jobs(root, max_runs=1)
    assert jobs.training() == [] and jobs.queue() == [queued.id]
    trainer = open_run("moved", root)
    trainer.lock()  # a live trainer holds the lock, on any host: running
    try:
        assert moved.status()["state"] == "running" and jobs.training() == ["moved"]
    finally:
        trainer.unlock()


def test_an_abandoned_claim_frees_its_slot(root):
    run = create_run(TINY_RUN, root, name="claimed")
    assert run.claim(token="gone", pid=os.getppid())  # a live pid that is not its starter
    assert run.status().get("starting") and Jobs(root).training() == ["claimed"]
    old = time.time() - 3600  # an hour ago: the starter never took the lock
    os.utime(run.path / "claim.json", (old, old))
    assert (run.status()["state"], run.status()["error"]) == ("failed", NEVER_STARTED)
    assert Jobs(root).training() == []


def test_a_stale_run_from_another_host_resumes(good_copy, capsys):
    good_copy.set_status("running", pid=os.getppid(), step=1)
    damage(good_copy, host="old-container")
    assert main(["train", "--resume", "good"]) == 0, capsys.readouterr().err
    assert good_copy.status()["state"] == "done"


# -- U6, U12: damaged adapters and checkpoints name the file ---------------------------------------


ADAPTER_DAMAGE = {
    "garbage-weights": ("adapter_model.safetensors", b"garbage", "adapter_model.safetensors is unreadable"),
    "broken-config": ("adapter_config.json", b"{nope", "adapter_config.json is not valid JSON"),
    "rank-text": ("adapter_config.json", None, "`r` = 'x' is not a whole rank"),
    "rank-mismatch": ("adapter_config.json", 8, "has rank 2 but adapter_config.json says `r` = 8"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ADAPTER_DAMAGE))
@pytest.mark.parametrize("command", ["eval", "chat"])
def test_a_damaged_adapter_is_refused_naming_the_file(good_copy, capsys, case, command):
    name, content, message = ADAPTER_DAMAGE[case]
    path = good_copy.adapter_dir / name
    if content is None or isinstance(content, int):
        config = json.loads(path.read_text())
        path.write_text(json.dumps({**config, "r": "x" if content is None else content}))
    else:
        path.write_bytes(content)
    extra = ["--prompt", "hi", "--max-new-tokens", "2"] if command == "chat" else []
    assert main([command, "--run", "good", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "internal error" not in err, err


@pytest.mark.parametrize(
    "meta", [{"step": "abc"}, {}, {"step": -5}, [1, 2], {"step": 999}, {"step": True}]
)
def test_a_damaged_checkpoint_is_refused_before_anything_is_written(good_copy, capsys, meta):
    good_copy.set_status("failed", error="boom")
    path = good_copy.path / "qpa_state.safetensors"
    tensors, _ = load_tensors(path)
    save_tensors(path, tensors, meta)
    before = (good_copy.path / "status.json").read_bytes()
    assert main(["train", "--resume", "good"]) == 2
    err = capsys.readouterr().err
    assert "qpa_state.safetensors is damaged" in err and "internal error" not in err, err
    assert (good_copy.path / "status.json").read_bytes() == before


# -- U1, U2: divergence fails the run; JSON stays strict ------------------------------------------


def test_a_diverging_run_fails_without_exporting_nan(root, capsys):
    assert main(["train", *TINY, "--steps", "2", "--beta", "1e308", "--name", "nan"]) == 2
    assert "Training diverged: the validation loss at step 0 is nan" in capsys.readouterr().err
    run = open_run("nan", root)
    assert run.status()["state"] == "failed" and "diverged" in run.status()["error"]
    assert not run.has_adapter()
    assert main(["runs", "--json"]) == 0
    assert strict_json(capsys.readouterr().out)[0]["state"] == "failed"


def test_nan_written_by_older_versions_is_printed_as_null(root, capsys):
    run = create_run(TINY_RUN, root, name="old")
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "split": "val", "loss": NaN, "perplexity": NaN}\n')
    for argv in (["runs", "--json"], ["runs", "show", "old", "--json"]):
        assert main(argv) == 0
        strict_json(capsys.readouterr().out)


def test_the_largest_learning_rate_never_overflows(root, capsys):
    code = main(["train", *TINY, "--method", "lora", "--lr", "10", "--steps", "3", "--name", "big"])
    err = capsys.readouterr().err
    assert code in (0, 2) and "internal error" not in err and "Overflow" not in err, err
    assert main(["runs", "--json"]) == 0
    strict_json(capsys.readouterr().out)


# -- T1: visitors see the error, not the traceback ------------------------------------------------


def test_the_app_shows_a_failed_runs_error_without_its_traceback(root):
    run = create_run(TINY_RUN, root, name="failed")
    try:
        raise RuntimeError("Overflow when unpacking long long")
    except RuntimeError:
        run.log(traceback.format_exc())  # what the training loop logs
    run.log("failed: RuntimeError")
    shown = runs_tab.on_open(Studio.create(runs_root=root, demo=True), "failed")[1]
    assert "Traceback" not in shown and "File " not in shown and __file__ not in shown
    assert "RuntimeError: Overflow when unpacking long long" in shown
    assert "Traceback (most recent call last)" in run.log_text()  # kept for the operator
