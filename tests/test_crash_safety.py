"""Crash safety: a training process killed with SIGKILL mid-step leaves a failed (interrupted)
run with its metrics, which ``--resume`` continues from the last checkpoint; a writer killed at
random moments never leaves a half-written status, config, state or adapter behind."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qpa.cli.main import main
from qpa.config import AdapterConfig, RunConfig, TrainConfig
from qpa.runs.run import INTERRUPTED, Run, atomic_write_json
from qpa.runs.store import create_run, open_run

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "tiny-llama", "--batch-size", "4", "--max-examples", "40",
        "--max-length", "48", "--topics", "ai"]  # fmt: skip
KILLS = 25  # writer kills in the atomic-write test


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private runs root and QPA_HOME, for this process and its children."""
    monkeypatch.setenv("QPA_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models: one thread is fastest on a busy CPU
    return {**os.environ}


def qpa_process(env: dict, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "qpa", *argv], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.time() + timeout
    while not (value := predicate()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return value


def complete_lines(path: Path) -> list[dict]:
    """Every line of a JSON-lines file parses, except perhaps a torn last one."""
    lines = path.read_bytes().split(b"\n")
    *whole, last = lines
    records = [json.loads(line) for line in whole if line]
    if last:  # a torn last line: the only damage a kill may do
        with pytest.raises(ValueError):
            json.loads(last)
    return records


@pytest.mark.chatterbot
def test_sigkill_mid_step_is_interrupted_then_resumes_from_checkpoint(env, capsys):
    steps, every = 200, 5
    proc = qpa_process(env, "train", *TINY, "--steps", str(steps), "--eval-every", str(every),
                       "--name", "crash")  # fmt: skip
    run = Run(Path(env["QPA_RUNS"]) / "crash")
    wait_for(lambda: len(run.metrics("train")) >= 2 * every + 2, 90, "two checkpoints")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    status = open_run("crash").status()
    assert (status["state"], status["error"]) == ("failed", INTERRUPTED)
    killed_at = status["step"]
    assert 2 * every <= killed_at < steps
    records = complete_lines(run.path / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"][-1] >= killed_at - 1
    _, meta = run.load_state()
    # the last checkpoint: a kill between a checkpoint step's status and its save finds the one before
    assert meta["step"] % every == 0 and killed_at - every <= meta["step"] <= killed_at
    assert main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "failed"

    resumed = qpa_process(env, "train", "--resume", "crash")
    out, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, out
    status = run.status()
    assert (status["state"], status["step"], status["error"]) == ("done", steps, None)
    assert [m["step"] for m in run.metrics("train")] == list(range(1, steps + 1))
    assert [m["step"] for m in run.metrics("val")] == list(range(0, steps + 1, every))
    assert run.has_adapter() and not list(run.path.glob(".*.tmp"))


def test_resume_refuses_running_done_and_stateless_runs(env, capsys):
    config = RunConfig(adapter=AdapterConfig(method="lora"), train=TrainConfig(steps=3))
    fresh = create_run(config, name="fresh")
    fresh.set_status("failed", error="boom")
    assert main(["train", "--resume", "fresh"]) == 2
    assert "no saved state" in capsys.readouterr().err
    fresh.set_status("running", pid=os.getpid())
    assert main(["train", "--resume", "fresh"]) == 2
    assert "is running" in capsys.readouterr().err
    fresh.set_status("failed", pid=None)
    fresh.save_state({"w": __import__("torch").zeros(1)}, {"step": 1})
    fresh.lock()  # another process trains it (here: this one, through another descriptor)
    try:
        assert main(["train", "--resume", "fresh"]) == 2
        assert "being trained by another process" in capsys.readouterr().err
    finally:
        fresh.unlock()


# -- a writer killed at random moments ----------------------------------------------------------


def _write_forever(run: Run, adapter_model, start: int) -> None:
    """Rewrite every kind of run file, each holding `i`, until killed."""
    import torch

    from qpa.adapters.export import export_adapter

    torch.set_num_threads(1)
    for i in range(start, 10**9):
        run.set_status("running", pid=os.getpid(), step=i)
        config = RunConfig(train=TrainConfig(steps=i + 1))
        atomic_write_json(run.path / "config.json", config.to_dict())
        run.append_metrics({"step": i, "split": "train", "pad": "x" * 2000})
        run.save_state({"w": torch.full((256, 256), float(i))}, {"step": i})
        export_adapter(adapter_model, None, run.adapter_dir, base_model=f"step-{i}")


def _check_files(run: Run, torn: set[int]) -> int:
    """Each file parses or is absent and state agrees with its meta; metrics lines all parse
    but torn ones, each of which was the last line when its writer died. Returns the last step."""
    from safetensors import safe_open

    assert json.loads((run.path / "status.json").read_text())["state"] in ("queued", "running")
    assert RunConfig.from_json((run.path / "config.json").read_text()).train.steps >= 1
    if (run.path / "qpa_state.safetensors").exists():
        tensors, meta = run.load_state()
        assert float(tensors["w"][0, 0]) == meta["step"]
    if run.adapter_dir.exists():
        meta = json.loads((run.adapter_dir / "adapter_config.json").read_text())
        assert meta["base_model_name_or_path"].startswith("step-")
        with safe_open(str(run.adapter_dir / "adapter_model.safetensors"), "pt") as f:
            assert list(f.keys())
    path, last = run.path / "metrics.jsonl", -1
    lines = path.read_text().split("\n") if path.exists() else []
    for i, line in enumerate(lines):
        try:
            last = json.loads(line)["step"] if line else last
        except ValueError:
            assert i in torn or i == len(lines) - 1, f"line {i} torn in the middle: {line[:40]}"
            torn.add(i)
    return last


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_writer_killed_at_random_never_leaves_half_a_file(tmp_path):
    import qpa.adapters.export  # noqa: F401 - imported before forking, not in each child
    from qpa.adapters.qpa_lora import wrap_lora
    from qpa.models.loading import load_model

    model = wrap_lora(load_model("tiny-llama")[0], AdapterConfig(method="lora", rank=2))
    run = create_run(RunConfig(train=TrainConfig(steps=1_000_000)), tmp_path, name="victim")
    rng, last, progress, torn = random.Random(0), -1, [], set()
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:  # the child writes until it is killed
            try:
                _write_forever(run, model, last + 1)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.05, 0.4))  # long enough for writes even on a loaded machine
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        last = _check_files(run, torn)
        progress.append(last)
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    assert progress[-1] > KILLS, progress  # the writer got far: the kills hit real writes
    assert len(torn) <= KILLS  # each kill lost at most the line it was writing
    assert [m["step"] for m in run.metrics()] == list(range(progress[-1] + 1))[
        -len(run.metrics()) :
    ]
    assert len(run.metrics()) == len([line for line in lines if line]) - len(torn)
