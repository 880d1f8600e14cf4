"""The run directory: the one interface between the training engine, the CLI, the app and tests.

A run is ``runs_root()/<id>/`` (created, opened and listed by `qpa.runs.store`), holding

- ``config.json``: the resolved `RunConfig`; ``versions.json``: library versions and platform,
- ``status.json``: state (queued, running, done, failed, cancelled), error, pid, times, progress,
- ``metrics.jsonl``: one JSON record per line, appended and fsynced (a torn last line is ignored),
- ``train.log``: the text log; ``qpa_state.safetensors`` + ``qpa_state.json``: trainable state
  for resuming; ``best.safetensors`` + ``best.json``: the trainable state and metrics of the
  best evaluation so far; ``adapter/``: the exported peft adapter; ``STOP``: a cancel request,
- ``claim.json``: who took a queued run to start it (created once, by exactly one process),
- ``.lock``: locked (``flock``) by the process training the run, released when it exits.

JSON files are written atomically and a run directory is never reused, so any reader (another
process, the app polling every second) sees either the old file or the new one, never half;
``config.json`` is written last, so a folder without it is not a run yet. Secret-looking
environment values (``HF_TOKEN``...) never reach the log or the status. Nothing here imports
torch until state is saved or loaded.
"""

from __future__ import annotations

import io
import json
import os
import socket
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qpa.config import RunConfig
from qpa.constants import ADAPTER_FILES
from qpa.runs.control import FINISHED, RunControl
from qpa.runs.files import (
    atomic_write_json,
    load_tensors,
    now,
    pid_alive,
    read_json,
    redact,
    save_tensors,
)
from qpa.runs.records import STATES, checkpoint_problem, plain_record, rewound, status_problem
from qpa.safe_io import MAX_JSON_BYTES, dumps, open_regular, read_regular

if TYPE_CHECKING:
    import torch

INTERRUPTED = "interrupted (process ended)"
NEVER_STARTED = "interrupted (the training process ended before it started)"
MAX_METRICS_BYTES = 512 * 2**20  # about 2 million records


def _local(record: dict[str, Any]) -> bool:
    return record.get("host") in (None, socket.gethostname())


class Run(RunControl):
    """One run folder; every accessor reads the disk, so several processes can share it.

    Stop requests, the queue's start claim, cancelling and the training lock come from
    `qpa.runs.control.RunControl`."""

    def __init__(self, path: str | Path, config: RunConfig | None = None):
        self.path = Path(path)
        self.id = self.path.name
        self._config = config

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    @property
    def config(self) -> RunConfig:
        """The run's config, read once from ``config.json``."""
        if self._config is None:
            path = self.path / "config.json"
            text = read_regular(path, MAX_JSON_BYTES, "config.json").decode("utf-8", "replace")
            try:
                self._config = RunConfig.from_json(text)
            except ValueError as e:
                raise ValueError(f"Run {self.id}: config.json is invalid: {e}") from None
        return self._config

    # -- status ------------------------------------------------------------------------------

    def _raw_status(self) -> dict[str, Any]:
        """The status as written; a missing, unreadable or damaged one reads as failed, why."""
        try:
            status = read_json(self.path / "status.json")
        except (OSError, ValueError):
            return {"state": "failed", "error": "status.json is unreadable"}
        problem = status_problem(status)
        if problem:
            return {"state": "failed", "error": f"status.json is damaged: {problem}"}
        return status

    def status(self) -> dict[str, Any]:
        """The status; a run whose trainer is gone reads as failed (interrupted): a free lock
        proves it, whatever its ``pid`` (reused) or ``host`` (a new container) say. A claimed
        queued run reads ``starting: True`` until its claimer ended or left the lock free too
        long (`qpa.runs.control.CLAIM_GRACE_S`)."""
        status = self._raw_status()
        state, pid = status.get("state"), status.get("pid")
        if state == "running" and isinstance(pid, int) and pid != os.getpid():
            gone = self.lock_free()
            if gone is None:  # no locks here: the pid is all there is
                gone = _local(status) and not pid_alive(pid)
            if gone:
                return {**status, "state": "failed", "error": INTERRUPTED}
        if state == "queued" and (claim := self.claim_info()) is not None:
            pid = claim.get("pid")
            if isinstance(pid, int) and _local(claim) and not pid_alive(pid):
                return {**status, "state": "failed", "error": NEVER_STARTED}
            if self.claim_abandoned():
                return {**status, "state": "failed", "error": NEVER_STARTED}
            return {**status, "starting": True}
        return status

    @property
    def group(self) -> str:
        """The launch this run belongs to: status.json's ``group``; runs written before it was
        recorded were named ``<group>.qpa`` / ``<group>.lora`` by the app, else alone."""
        group = self._raw_status().get("group")
        if isinstance(group, str) and group:
            return group
        stem, _, suffix = self.id.rpartition(".")
        return stem if suffix in ("qpa", "lora") and stem else self.id

    def set_status(self, state: str | None = None, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into the status (state None: keep it); stamps started/finished/updated."""
        if state is not None and state not in STATES:
            raise ValueError(f"`state` = {state!r} is not one of: {', '.join(STATES)}.")
        status = self._raw_status()
        stamp = now()
        if state is not None:
            status["state"] = state
            if state == "running" and not status.get("started"):
                status["started"] = stamp
            if state in FINISHED:
                status["finished"] = stamp
            elif "finished" not in fields:
                status["finished"] = None
            if state in ("queued", "running", "done") and "error" not in fields:
                status["error"] = None
        if "pid" in fields:
            status["host"] = socket.gethostname()
        for key in ("error", "message"):
            if isinstance(fields.get(key), str):
                fields[key] = redact(fields[key])
        status.update(fields, updated=stamp)
        atomic_write_json(self.path / "status.json", status)
        return status

    # -- metrics and log -----------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one record as a JSON line, flushed and fsynced."""
        if not isinstance(record, dict):
            raise ValueError(f"`record` must be a dict, got {type(record).__name__}.")
        line = dumps(record)
        path = self.path / "metrics.jsonl"
        with open(path, "a+b") as f:
            if f.tell() > 0:  # a crash mid-append left a torn line: start a fresh one after it
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write((line + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def metrics(self, split: str | None = None) -> list[dict[str, Any]]:
        """Every complete record, oldest first, optionally only one `split` (train or val).

        Steps a resumed run redid (those after its last checkpoint) appear once, as redone;
        lines that are no record (torn, or edited) are skipped; an unreadable file: ValueError.
        """
        path = self.path / "metrics.jsonl"
        try:
            data = read_regular(path, MAX_METRICS_BYTES, "metrics.jsonl")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise ValueError(f"`run` {self.id}: metrics.jsonl is unreadable ({e.strerror}).") from None
        out = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a torn line from a crash mid-append
            if isinstance(record, dict) and plain_record(record):
                out.append(record)
        return [r for r in rewound(out) if split is None or r.get("split") == split]

    def log(self, message: str) -> None:
        """Append a timestamped line (or lines) to ``train.log``, secrets redacted."""
        stamp = now()
        lines = "".join(f"{stamp} {line}\n" for line in redact(str(message)).splitlines() or [""])
        with open(self.path / "train.log", "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()

    def log_text(self, tail_lines: int = 200) -> str:
        """The last `tail_lines` lines of ``train.log`` ('' when there is none)."""
        try:
            with open_regular(self.path / "train.log", "train.log") as f:
                text = io.TextIOWrapper(f, encoding="utf-8", errors="replace")
                return "".join(deque(text, maxlen=max(0, tail_lines)))
        except FileNotFoundError:
            return ""

    # -- adapter, stop request, trainable state --------------------------------------------------

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    def has_adapter(self) -> bool:
        return all((self.adapter_dir / f).is_file() for f in ADAPTER_FILES)

    def has_state(self) -> bool:
        return (self.path / "qpa_state.safetensors").is_file()

    def save_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Save trainable tensors and `meta` (step, optimizer settings) atomically; the meta
        lives in the safetensors header, so they cannot disagree (``qpa_state.json``: a copy)."""
        save_tensors(self.path / "qpa_state.safetensors", tensors, meta)
        atomic_write_json(self.path / "qpa_state.json", meta)

    def load_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, meta) from `save_state`; ValueError when the run has none or it is damaged."""
        path = self.path / "qpa_state.safetensors"
        if not path.is_file():
            raise ValueError(
                f"`run` {self.id} has no saved state ({path.name}); it cannot be resumed."
            )
        tensors, meta = load_tensors(path)
        problem = checkpoint_problem(meta, self.config.train.steps)
        if problem:
            raise ValueError(f"`run` {self.id}: {path.name} is damaged: {problem}.")
        return tensors, meta

    def has_best(self) -> bool:
        return (self.path / "best.safetensors").is_file()

    def save_best(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Save the best evaluation's tensors and `meta` (its step and metrics) atomically."""
        save_tensors(self.path / "best.safetensors", tensors, meta)
        atomic_write_json(self.path / "best.json", meta)

    def load_best(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, meta) from `save_best`."""
        return load_tensors(self.path / "best.safetensors")

    # -- tables ----------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """One row for run tables: what was trained, how far it got and how well.

        The perplexities are those of the step a finished run exported (`best_step`), else of
        the last evaluation; `worse_than_base` when that is still above the base model's.
        Unreadable metrics give a failed row saying why.
        """
        config, status = self.config, self.status()
        try:
            val = self.metrics("val")
        except ValueError as e:
            status, val = {**status, "state": "failed", "error": str(e)}, []
        result = status.get("result") or {}
        shown = result if "val_perplexity" in result else {
            f"val_{k}": v for k, v in (val[-1] if val else {}).items()
        }  # fmt: skip
        return {
            "id": self.id,
            "method": config.adapter.method,
            "model": config.model.model,
            "rank": config.adapter.rank,
            "chunk_size": config.qpa.chunk_size if config.adapter.method == "qpa-lora" else None,
            "trainable_params": status.get("trainable_params"),
            "state": status.get("state"),
            "error": status.get("error"),
            "step": status.get("step", 0),
            "total_steps": status.get("total_steps", config.train.steps),
            "val_perplexity": shown.get("val_perplexity"),
            "val_assistant_perplexity": shown.get("val_assistant_perplexity"),
            "best_step": result.get("best_step"),
            "base_perplexity": (status.get("base") or {}).get("headline_perplexity"),
            "worse_than_base": result.get("worse_than_base"),
            "created": status.get("created"),
            "wall_time_s": _wall_time(status),
            "has_adapter": self.has_adapter(),
        }


def _wall_time(status: dict[str, Any]) -> float | None:
    """Seconds from start to finish (or to now while running, or to the last update)."""
    start = status.get("started")
    if not start:
        return None
    end = status.get("finished") or (
        now() if status.get("state") == "running" else status.get("updated")
    )
    try:
        return max(
            0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        )
    except (TypeError, ValueError):
        return None
