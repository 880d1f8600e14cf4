"""Training runs as background processes, started from a queue that the run folders hold.

A launch creates each run's folder in state ``queued`` (`submit`). `schedule`, called by the
app's poller thread every second and after each launch, starts the oldest queued runs while
fewer than ``max_runs`` train, each as

    python -m qpa train --resume <id> --runs-dir <root>

in a session of its own (so it outlives the page and the app), at a lower CPU priority (so the
app keeps answering), with its output in ``<root>/.jobs/<id>.log``. Before starting a run the
scheduler takes the run's one-time claim (`Run.claim`) while holding ``<root>/.jobs/queue.lock``:
two app processes sharing a root can neither start one run twice nor exceed ``max_runs``
together, and a cancelled queued run (whose claim the cancel took) never starts. The child
accepts the claim through ``$QPA_CLAIM``. The queue is on disk, so it survives an app restart;
training processes never depended on the app. On ZeroGPU (``spawn`` off) the queue starts no
process: a launch trains in its own request there (`app.handlers.zerogpu`). No gradio here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from app.repeating import Repeating
from qpa import CLAIM_ENV, RunConfig, check_run_id, create_run, list_runs, open_run

try:
    import fcntl
except ImportError:  # Windows: the per-run claim still prevents double starts
    fcntl = None

logger = logging.getLogger(__name__)

JOBS_DIR = ".jobs"  # hidden, so `list_runs` skips it
NICE = 10  # training yields the CPU to the app's requests
LIVE = ("starting", "queued", "running")


def _project_root() -> str:
    """The folder holding the `qpa` package, so the child imports the same engine."""
    spec = importlib.util.find_spec("qpa")
    return str(Path(spec.origin).resolve().parent.parent)


def _queue_key(run) -> tuple:
    """Launch order: creation time, then when config.json was written (never rewritten)."""
    try:
        written = (run.path / "config.json").stat().st_mtime_ns
    except OSError:
        written = 0
    return (run.status().get("created") or "", written, run.id)


class Jobs:
    """The queue of runs under one runs root and the ``python -m qpa train`` processes it starts."""

    def __init__(self, root: str | Path, max_runs: int = 1, nice: int = NICE, spawn: bool = True):
        self.root = Path(root)
        self.max_runs = max_runs
        self.nice = nice
        self.spawn = spawn  # start training processes (off on ZeroGPU: requests train there)
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._poller: Repeating | None = None

    @property
    def jobs_dir(self) -> Path:
        return self.root / JOBS_DIR

    def command(self, run_id: str) -> list[str]:
        """The CLI command that starts (or resumes) `run_id`."""
        return [
            sys.executable,
            "-m",
            "qpa",
            "train",
            "--resume",
            run_id,
            "--runs-dir",
            str(self.root),
        ]

    def shell_command(self, run_id: str) -> str:
        """`command` as one line to paste into a terminal."""
        return shlex.join(["python", *self.command(run_id)[1:]])

    # -- the queue ---------------------------------------------------------------------------------

    def submit(self, config: RunConfig, group: str | None = None) -> str:
        """Queue `config` as a new run (a folder in state ``queued``) of launch `group`;
        returns its id."""
        return create_run(config, self.root, group=group).id

    def queue(self) -> list[str]:
        """Ids of the runs waiting to start, first to start first."""
        waiting = []
        for run in list_runs(self.root):
            status = run.status()
            if status.get("state") == "queued" and not status.get("starting"):
                waiting.append(run)
        return [r.id for r in sorted(waiting, key=_queue_key)]

    def training(self) -> list[str]:
        """Ids of the runs that hold a slot: running, or claimed and starting."""
        out = []
        for run in list_runs(self.root):
            status = run.status()
            if status.get("state") == "running" or status.get("starting"):
                out.append(run.id)
        return out

    def schedule(self) -> list[str]:
        """Start queued runs while fewer than `max_runs` train; returns the ids started."""
        self.poll()
        if not self.spawn or not self.root.is_dir():  # never recreate a removed root
            return []
        started = []
        with self._queue_lock():
            free = self.max_runs - len(self.training())
            for run_id in self.queue()[: max(0, free)]:
                token = secrets.token_hex(8)
                run = open_run(run_id, self.root)
                if run.claim(token=token):  # False: another app or a cancel took it first
                    self._start(run, token)
                    started.append(run_id)
        return started

    @contextlib.contextmanager
    def _queue_lock(self):
        """One scheduler at a time per runs root, across processes."""
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.jobs_dir / "queue.lock", "a+b") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            yield

    def _start(self, run, token: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", CLAIM_ENV: token, "QPA_NICE": str(self.nice)}
        threads = max(1, (os.cpu_count() or 1) // self.max_runs)
        env.setdefault("OMP_NUM_THREADS", str(threads))  # an explicit setting wins
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_project_root(), env.get("PYTHONPATH", "")) if p
        )
        try:
            with open(self.jobs_dir / f"{run.id}.log", "wb") as log:
                proc = subprocess.Popen(
                    self.command(run.id), stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=env, cwd=_project_root(), start_new_session=True,
                )  # fmt: skip
        except OSError as e:
            run.set_status("failed", error=f"could not start the training process: {e}")
            return
        with self._lock:
            self._procs[run.id] = proc
        run.set_claim_pid(proc.pid)

    def poll(self) -> None:
        """Reap ended children (a zombie looks alive); record why one ended before training."""
        with self._lock:
            ended = {i: p for i, p in self._procs.items() if p.poll() is not None}
            for run_id in ended:
                del self._procs[run_id]
        for run_id in ended:
            with contextlib.suppress(ValueError):  # the folder was removed meanwhile
                run = open_run(run_id, self.root)
                status = run.status()
                if status.get("state") == "failed" and not status.get("started"):
                    if str(status.get("error") or "").startswith("interrupted"):
                        run.set_status("failed", error=self.launch_error(run_id), pid=None)

    def start_poller(self, interval: float = 1.0) -> None:
        """Schedule every `interval` seconds in a daemon thread (the app calls this once)."""
        if self._poller is None or not self._poller.thread.is_alive():
            failure = f"queue poll under {self.root} failed"  # a bad folder must not stop it
            self._poller = Repeating(self.schedule, interval, "qpa-queue", failure)

    def stop_poller(self, timeout_s: float = 10.0) -> None:
        """Stop scheduling (the app closing): the poller ends after its current round."""
        if self._poller is not None:
            self._poller.stop(timeout_s)

    # -- what the page shows ---------------------------------------------------------------------

    def state(self, run_id: str) -> dict[str, Any]:
        """The run's status; ``starting`` while claimed, a queued one with its ``position``."""
        check_run_id(run_id)
        self.poll()
        status = open_run(run_id, self.root).status()
        if status.get("state") == "queued":
            if status.get("starting"):
                return {**status, "state": "starting"}
            queue = self.queue()
            position = queue.index(run_id) + 1 if run_id in queue else len(queue)
            status = {**status, "position": position, "queued": len(queue)}
            status.update(training=len(self.training()), max_runs=self.max_runs)
        return status

    def launch_error(self, run_id: str) -> str:
        """Why a job ended before training: the CLI's ``error:`` line, else the log's tail."""
        try:
            lines = (self.jobs_dir / f"{run_id}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "the training process did not start"
        errors = [line for line in lines if line.startswith("error:")]
        if errors:
            return errors[-1].removeprefix("error:").strip()
        return lines[-1] if lines else "the training process ended without output"

    def stop(self, run_id: str) -> str:
        """Cancel a queued run (it never starts) or ask a running one to stop; says which."""
        check_run_id(run_id)
        return open_run(run_id, self.root).cancel()

    def live(self) -> list[str]:
        """Ids of runs queued, starting or running (newest first)."""
        self.poll()
        return [
            r.id for r in list_runs(self.root) if r.status().get("state") in ("queued", "running")
        ]

    def wait(self, run_id: str, timeout: float) -> dict[str, Any]:
        """Block until `run_id` has ended or `timeout` seconds passed, driving the queue meanwhile
        (tests and scripts, where no poller runs)."""
        deadline = time.time() + timeout
        while True:
            self.schedule()
            state = self.state(run_id)
            if state.get("state") not in LIVE or time.time() > deadline:
                return state
            time.sleep(0.5)
