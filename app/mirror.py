"""Copy finished runs to the owner's Hub dataset (``QPA_MIRROR_REPO``) in the background, and
restore them from it when the app starts with an empty runs folder. No gradio here.

`Mirror.start` restores (a failure is logged and shown, never fatal), then a daemon thread
uploads every run that finished since it was last copied, `INTERVAL_S` apart; a run still held
by a trainer (ZeroGPU between two GPU calls) waits. Each run's last copy is recorded in
``<root>/.mirror.json`` (hidden, so `list_runs` skips it), with the finish time it copied, so a
run stopped and resumed is copied again. A failed copy is retried `RETRY_S` later. Uploads
never block training or a request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from app.repeating import Repeating
from qpa import list_runs, mirror_run, restore_runs

LEDGER = ".mirror.json"
INTERVAL_S = 30.0  # seconds between looks for newly finished runs
RETRY_S = 600.0  # a failed copy waits this long before the next try
FINISHED = ("done", "failed", "cancelled")
logger = logging.getLogger(__name__)


class Mirror:
    """The mirror of one runs root in the dataset `repo`; `api` stands in for ``HfApi``."""

    def __init__(self, root: str | Path, repo: str, api: Any = None) -> None:
        self.root, self.repo, self.api = Path(root), repo, api
        self.restore_error: str | None = None
        self.restored: list[str] = []
        self._thread: Repeating | None = None

    def ledger(self) -> dict[str, dict]:
        """Run id → {finished, time, error} of its last copy (or failed attempt)."""
        with contextlib.suppress(OSError, ValueError):
            data = json.loads((self.root / LEDGER).read_text())
            if isinstance(data, dict):
                return data
        return {}

    def pending(self) -> list:
        """Finished runs not copied since they last finished, and not held by a trainer."""
        ledger, now, out = self.ledger(), time.time(), []
        for run in list_runs(self.root):
            status, entry = run.status(), ledger.get(run.id, {})
            if status.get("state") not in FINISHED or run.lock_free() is False:
                continue
            copied = entry.get("finished") == status.get("finished")
            if copied and (not entry.get("error") or now - entry.get("time", 0) < RETRY_S):
                continue
            out.append(run)
        return out

    def sync(self) -> list[str]:
        """Copy every pending run; returns the ids copied. Failures are logged and recorded."""
        done = []
        for run in self.pending():
            entry: dict[str, Any] = {"finished": run.status().get("finished"), "time": time.time()}
            try:
                mirror_run(run, self.repo, api=self.api)
                done.append(run.id)
            except (ValueError, OSError) as e:
                entry["error"] = str(e)
                logger.warning("mirroring run %s to %s failed: %s", run.id, self.repo, e)
            self._record(run.id, entry)
        return done

    def _record(self, run_id: str, entry: dict) -> None:
        ledger = {**self.ledger(), run_id: entry}
        tmp = self.root / f"{LEDGER}.tmp"
        tmp.write_text(json.dumps(ledger, indent=1))
        tmp.replace(self.root / LEDGER)

    def restore(self) -> list[str]:
        """Fill an empty runs root from the dataset; a failure is kept in `restore_error`."""
        try:
            self.restored = restore_runs(self.root, self.repo, api=self.api)
        except (ValueError, OSError) as e:
            self.restore_error = str(e)
            logger.warning("restoring runs from %s failed: %s", self.repo, e)
        return self.restored

    def start(self, interval: float = INTERVAL_S) -> None:
        """Restore, then copy finished runs every `interval` seconds in a daemon thread."""
        if self._thread is not None:
            return
        self.restore()
        failure = f"mirroring runs to {self.repo} failed"  # a bad folder must not end the mirror
        self._thread = Repeating(self.sync, interval, "qpa-mirror", failure)

    def describe(self) -> str:
        """One line for the Runs tab: where runs are copied, and a restore that failed."""
        url = f"https://huggingface.co/datasets/{self.repo}"
        line = (
            f"Finished runs are copied to the Hub dataset [{self.repo}]({url}) "
            "(`QPA_MIRROR_REPO`) and restored from it when the app starts with no runs"
        )
        if self.restored:
            line += f"; {len(self.restored)} run(s) were restored at this start"
        if self.restore_error:
            line += f". Restoring failed at this start: {self.restore_error.rstrip('.')}"
        return line + "."
