"""Training runs as background processes, launched and watched the way LlamaBoard does it.

A launch writes the run's config to ``<root>/.jobs/<id>.json`` and starts

    python -m qpa train --config <root>/.jobs/<id>.json --name <id> --runs-dir <root>

in a session of its own (so it outlives the page and the app), with its output in
``<root>/.jobs/<id>.log``. From then on the run directory is the truth: progress, metrics, the
adapter and the stop request all go through `qpa.runs`. This module only adds what a run
directory cannot know yet: that a process was started and has not created its folder, or died
before it could (then the log's last ``error:`` line says why). No gradio here.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from qpa import RunConfig, list_runs, open_run

JOBS_DIR = ".jobs"  # hidden, so `list_runs` skips it
STARTING_GRACE_S = 120  # a job file this young with no run folder is still starting
LIVE = ("starting", "queued", "running")


def new_group_id() -> str:
    """A fresh id shared by a QPA run and its matched LoRA baseline."""
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def group_of(run_id: str) -> str:
    """The launch group of a run id: ``<group>.qpa`` and ``<group>.lora`` share one."""
    return run_id.rsplit(".", 1)[0]


def _project_root() -> str:
    """The folder holding the `qpa` package, so the child imports the same engine."""
    spec = importlib.util.find_spec("qpa")
    return str(Path(spec.origin).resolve().parent.parent)


class Jobs:
    """Starts ``python -m qpa train`` processes under one runs root and reports their state."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    @property
    def jobs_dir(self) -> Path:
        return self.root / JOBS_DIR

    def command(self, run_id: str) -> list[str]:
        """The CLI command that trains `run_id` from its job config."""
        config = self.jobs_dir / f"{run_id}.json"
        return [
            sys.executable,
            "-m",
            "qpa",
            "train",
            "--config",
            str(config),
            "--name",
            run_id,
            "--runs-dir",
            str(self.root),
        ]

    def shell_command(self, run_id: str) -> str:
        """`command` as one line to paste into a terminal."""
        return shlex.join(["python", *self.command(run_id)[1:]])

    def launch(self, config: RunConfig, run_id: str, threads: int | None = None) -> str:
        """Write the job config and start training `run_id`; returns the shell command."""
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        (self.jobs_dir / f"{run_id}.json").write_text(config.to_json(), encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_project_root(), env.get("PYTHONPATH", "")) if p
        )
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        with open(self.jobs_dir / f"{run_id}.log", "wb") as log:
            proc = subprocess.Popen(
                self.command(run_id),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=_project_root(),
                start_new_session=True,
            )
        with self._lock:
            self._procs[run_id] = proc
        return self.shell_command(run_id)

    def poll(self) -> None:
        """Reap finished children, so a crashed one does not linger as a zombie that looks alive."""
        with self._lock:
            for proc in self._procs.values():  # kept after exit: the code explains a missing folder
                proc.poll()

    def state(self, run_id: str) -> dict[str, Any]:
        """The run's status dict; ``starting`` or ``failed`` (with the reason) before its folder."""
        self.poll()
        if (self.root / run_id / "config.json").is_file():
            return open_run(run_id, self.root).status()
        proc = self._procs.get(run_id)
        if proc is not None and proc.returncode is None:
            return {"state": "starting", "step": 0}
        log = self.jobs_dir / f"{run_id}.log"
        if proc is None and log.is_file() and time.time() - log.stat().st_mtime < STARTING_GRACE_S:
            return {"state": "starting", "step": 0}
        return {"state": "failed", "error": self.launch_error(run_id), "step": 0}

    def launch_error(self, run_id: str) -> str:
        """Why a job ended before creating its run: the CLI's ``error:`` line, else the log tail."""
        try:
            lines = (self.jobs_dir / f"{run_id}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "the training process did not start"
        errors = [line for line in lines if line.startswith("error:")]
        if errors:
            return errors[-1].removeprefix("error:").strip()
        return lines[-1] if lines else "the training process ended without output"

    def stop(self, run_id: str) -> str:
        """Ask a run to stop after its current step; a job still starting is terminated."""
        if (self.root / run_id / "config.json").is_file():
            run = open_run(run_id, self.root)
            if run.status().get("state") not in LIVE:
                return f"{run_id} already finished"
            run.request_stop()
            return f"asked {run_id} to stop after its current step"
        proc = self._procs.get(run_id)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            return f"stopped {run_id} before it started training"
        return f"{run_id} is not running"

    def live(self) -> list[str]:
        """Ids of runs that are starting, queued or running (newest first)."""
        self.poll()
        with self._lock:
            pending = [i for i, p in self._procs.items() if p.returncode is None]
        ids = [r.id for r in list_runs(self.root) if r.status().get("state") in LIVE]
        return ids + [i for i in pending if i not in ids]

    def wait(self, run_id: str, timeout: float) -> dict[str, Any]:
        """Block until `run_id` has finished or failed, or `timeout` seconds passed (tests, CLI)."""
        deadline = time.time() + timeout
        while True:
            state = self.state(run_id)
            if state.get("state") not in LIVE or time.time() > deadline:
                return state
            time.sleep(0.5)
