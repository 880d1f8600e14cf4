"""How processes coordinate over one run folder: stop requests, the queue's one-time start
claim, cancelling, and the lock held by the process that trains it.

`RunControl` is a base of `qpa.runs.run.Run`; it needs the run's ``path``, ``id``, ``status()`` and
``set_status()``. Files: ``STOP`` (a stop request), ``claim.json`` (who took a queued run to
start it: created once, by exactly one process, see `qpa.runs.files.claim_file`) and ``.lock``
(``flock``-ed by the training process; the kernel releases it when that process dies, even by
``kill -9``, so a lock is never stale).

>>> import tempfile
>>> from qpa.config import RunConfig
>>> from qpa.runs.store import create_run
>>> run = create_run(RunConfig(), tempfile.mkdtemp(), name="queued")
>>> run.cancel(), run.status()["state"], run.claim()
('cancelled queued before it started', 'cancelled', False)
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from qpa.runs.files import atomic_write_json, claim_file, now, read_json

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the claim and status checks still apply
    fcntl = None

CLAIM, LOCK, STOP = "claim.json", ".lock", "STOP"
FINISHED = ("done", "failed", "cancelled")
CLAIM_GRACE_S = 120.0  # a claimed run whose lock stays free this long was never started
LOCK_TRIES = 20  # `lock` retries a busy lock this often, 10 ms apart: a probe holds it briefly


class RunControl:
    """Stop, claim, cancel and lock one run folder (mixed into `qpa.runs.run.Run`)."""

    path: Path
    id: str
    _lock_fd: int | None = None

    def status(self) -> dict[str, Any]:  # provided by Run
        raise NotImplementedError

    def set_status(self, state: str | None = None, **fields: Any) -> dict[str, Any]:
        raise NotImplementedError

    def request_stop(self) -> None:
        """Ask the training process to stop after its current step (it polls `stop_requested`)."""
        (self.path / STOP).write_text(now() + "\n", encoding="utf-8")

    def stop_requested(self) -> bool:
        return (self.path / STOP).exists()

    def clear_stop(self) -> None:
        """Withdraw a stop request, e.g. before resuming a cancelled run."""
        (self.path / STOP).unlink(missing_ok=True)

    # -- queue claim, cancel, training lock ------------------------------------------------------

    def claim(self, token: str = "", pid: int | None = None) -> bool:
        """Take this run's one-time start claim; True only for the one caller that got it."""
        record = {"token": token, "pid": pid or os.getpid(), "host": socket.gethostname()}
        return claim_file(self.path / CLAIM, {**record, "time": now()})

    def claim_info(self) -> dict[str, Any] | None:
        """Who claimed the run ({token, pid, host, time}), or None while nobody has."""
        try:
            info = read_json(self.path / CLAIM)
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else {}

    def set_claim_pid(self, pid: int) -> None:
        """Hand the claim to the process that will train (the claimer spawned it)."""
        atomic_write_json(self.path / CLAIM, {**(self.claim_info() or {}), "pid": pid})

    def claim_abandoned(self) -> bool:
        """Whether the claim is older than `CLAIM_GRACE_S` and no trainer holds the lock: the
        process that took it is gone, whatever its pid and host say now."""
        try:
            age = time.time() - (self.path / CLAIM).stat().st_mtime
        except OSError:
            return False
        return age > CLAIM_GRACE_S and self.lock_free() is True

    def cancel(self) -> str:
        """Cancel: a queued run nobody started ends cancelled and never starts; a starting or
        running one is asked to stop after its current step. Returns what happened."""
        state = self.status().get("state")
        if state in FINISHED:
            return f"{self.id} already {state}"
        if state == "queued" and self.claim(token="cancel"):
            self.set_status("cancelled", message="cancelled before it started")
            return f"cancelled {self.id} before it started"
        self.request_stop()
        return f"asked {self.id} to stop after its current step"

    def lock(self) -> None:
        """Lock the run for this process's training (released when it exits); ValueError if
        another live process holds it."""
        if fcntl is None or self._lock_fd is not None:
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(LOCK_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt == LOCK_TRIES - 1:
                    os.close(fd)
                    raise ValueError(
                        f"`run` {self.id!r} is being trained by another process."
                    ) from None
                time.sleep(0.01)
        self._lock_fd = fd

    def lock_free(self) -> bool | None:
        """True when no other process holds the run's lock (so none trains it), False when one does,
        None where locks are unavailable (Windows). The probe holds a shared lock for an
        instant; `lock` retries past it."""
        if fcntl is None:
            return None
        if self._lock_fd is not None:  # this process holds it: any other trainer is gone
            return True
        try:
            fd = os.open(self.path / LOCK, os.O_RDONLY)
        except FileNotFoundError:
            return True  # never locked
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return False
        finally:
            os.close(fd)  # drops the probe's lock
        return True

    def unlock(self) -> None:
        """Release `lock` (a process's exit releases it too)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the only descriptor drops the flock
            self._lock_fd = None

    def remove_temps(self) -> None:
        """Delete temp files and folders a killed writer left (call while holding `lock`)."""
        for path in self.path.glob(".*"):
            if path.name.endswith(".tmp") and path.is_file():
                path.unlink(missing_ok=True)
            elif path.name.startswith(".adapter-") and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
