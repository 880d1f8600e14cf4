"""The run directory: the one interface between the training engine, the CLI, the app and tests.

A run is ``runs_root()/<id>/`` holding

- ``config.json``: the resolved `RunConfig`; ``versions.json``: library versions and platform,
- ``status.json``: state (queued, running, done, failed, cancelled), error, pid, times, progress,
- ``metrics.jsonl``: one JSON record per line, appended and fsynced (a torn last line is ignored),
- ``train.log``: the text log; ``qpa_state.safetensors`` + ``qpa_state.json``: trainable state
  for resuming; ``adapter/``: the exported peft adapter; ``STOP``: a cancel request.

JSON files are written atomically and a run directory is never reused, so any reader (another
process, the app polling every second) sees either the old file or the new one, never half.
Nothing here imports torch until state is saved or loaded.

>>> import tempfile
>>> from qpa.config import RunConfig
>>> root = tempfile.mkdtemp()
>>> run = create_run(RunConfig(), root, name="demo")
>>> run.append_metrics({"step": 0, "split": "val", "loss": 2.0, "perplexity": 7.39})
>>> open_run("demo", root).status()["state"], [r.id for r in list_runs(root)]
('queued', ['demo'])
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import secrets
import socket
import sys
import tempfile
from collections import deque
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qpa.config import RunConfig

if TYPE_CHECKING:
    import torch

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # = qpa.export.ADAPTER_FILES
INTERRUPTED = "interrupted (process ended)"
_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def now() -> str:
    """The local time as ISO 8601 with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def runs_root(root: str | Path | None = None) -> Path:
    """`root` if given, else ``$QPA_RUNS``, else ``./runs``."""
    return Path(root if root else os.environ.get("QPA_RUNS") or "runs")


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync it and rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_run_id(run_id: str, field: str = "run") -> str:
    """`run_id` if it is a safe folder name (letters, digits, ``._-``; no ``..``), else ValueError."""
    if not isinstance(run_id, str) or not _ID.fullmatch(run_id) or ".." in run_id:
        raise ValueError(
            f"`{field}` = {run_id!r} is not a valid run id; use 1-128 letters, digits, "
            "'.', '_' or '-', without '..' or '/'."
        )
    if run_id.startswith("."):
        raise ValueError(f"`{field}` = {run_id!r} must not start with '.'.")
    return run_id


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of python, torch, transformers, peft and qpa, and the platform (no imports)."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    dists = {"torch": "torch", "transformers": "transformers", "peft": "peft", "qpa": "qpa-studio"}
    for name, dist in dists.items():
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def create_run(config: RunConfig, root: str | Path | None = None, name: str | None = None) -> Run:
    """A new queued run for `config` (resolved); `name` or ``YYYYmmdd-HHMMSS-<method>-<hex4>``."""
    if not isinstance(config, RunConfig):
        raise ValueError(f"`config` must be a RunConfig, got {type(config).__name__}.")
    config = config.resolved()
    base = runs_root(root)
    base.mkdir(parents=True, exist_ok=True)
    path = _claim_dir(base, config.adapter.method, name)
    atomic_write_json(path / "config.json", config.to_dict())
    atomic_write_json(path / "versions.json", library_versions())
    created = now()
    status = {
        "state": "queued", "error": None, "pid": None, "host": socket.gethostname(),
        "created": created, "started": None, "updated": created, "finished": None,
        "step": 0, "total_steps": config.train.steps, "message": "",
    }  # fmt: skip
    atomic_write_json(path / "status.json", status)
    return Run(path, config)


def _claim_dir(base: Path, method: str, name: str | None) -> Path:
    """Create the run folder; mkdir without exist_ok is the lock that stops two runs sharing one."""
    if name is not None:
        path = base / check_run_id(name, "name")
        try:
            path.mkdir()
        except FileExistsError:
            raise ValueError(
                f"`name` = {name!r}: run {path} already exists; pick another name."
            ) from None
        return path
    for _ in range(20):
        run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{method}-{secrets.token_hex(2)}"
        try:
            (base / run_id).mkdir()
            return base / run_id
        except FileExistsError:
            continue
    raise ValueError(f"Could not find a free run id under {base}.")


def open_run(run_id: str, root: str | Path | None = None) -> Run:
    """The existing run `run_id`; ValueError naming `run` (with some existing ids) otherwise."""
    check_run_id(run_id)
    base = runs_root(root)
    path = base / run_id
    if not (path / "config.json").is_file():
        known = [r.id for r in list_runs(base)[:5]]
        hint = f"recent runs: {', '.join(known)}" if known else "it has no runs yet"
        raise ValueError(f"`run` = {run_id!r} not found under {base}; {hint}.")
    return Run(path)


def list_runs(root: str | Path | None = None) -> list[Run]:
    """Every readable run under the root, newest first; folders that are not runs are skipped."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    runs = []
    for path in base.iterdir():
        if not path.is_dir() or not _ID.fullmatch(path.name) or path.name.startswith("."):
            continue
        run = Run(path)
        try:
            run.config  # noqa: B018 - skip folders whose config cannot be read
        except (OSError, ValueError, TypeError):
            continue
        runs.append(run)
    return sorted(runs, key=lambda r: (r.status().get("created") or "", r.id), reverse=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or cannot be probed here
    return True


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class Run:
    """One run folder; every accessor reads the disk, so several processes can share it."""

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
            text = (self.path / "config.json").read_text(encoding="utf-8")
            try:
                self._config = RunConfig.from_json(text)
            except ValueError as e:
                raise ValueError(f"Run {self.id}: config.json is invalid: {e}") from None
        return self._config

    # -- status ------------------------------------------------------------------------------

    def _raw_status(self) -> dict[str, Any]:
        try:
            status = _read_json(self.path / "status.json")
        except (OSError, ValueError):
            status = None
        ok = isinstance(status, dict)
        return status if ok else {"state": "failed", "error": "status.json is unreadable"}

    def status(self) -> dict[str, Any]:
        """The status; a `running` run whose process on this host is gone reads as failed."""
        status = self._raw_status()
        pid, local = status.get("pid"), status.get("host") in (None, socket.gethostname())
        if status.get("state") == "running" and isinstance(pid, int) and local:
            if not _pid_alive(pid):
                return {**status, "state": "failed", "error": INTERRUPTED}
        return status

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
        status.update(fields, updated=stamp)
        atomic_write_json(self.path / "status.json", status)
        return status

    # -- metrics and log -----------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one record as a JSON line, flushed and fsynced."""
        if not isinstance(record, dict):
            raise ValueError(f"`record` must be a dict, got {type(record).__name__}.")
        line = json.dumps(record)
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
        """Every complete record, oldest first, optionally only one `split` (train or val)."""
        try:
            text = (self.path / "metrics.jsonl").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line from a crash mid-append
            if isinstance(record, dict) and (split is None or record.get("split") == split):
                out.append(record)
        return out

    def log(self, message: str) -> None:
        """Append a timestamped line (or lines) to ``train.log``."""
        stamp = now()
        lines = "".join(f"{stamp} {line}\n" for line in str(message).splitlines() or [""])
        with open(self.path / "train.log", "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()

    def log_text(self, tail_lines: int = 200) -> str:
        """The last `tail_lines` lines of ``train.log`` ('' when there is none)."""
        try:
            with open(self.path / "train.log", encoding="utf-8", errors="replace") as f:
                return "".join(deque(f, maxlen=max(0, tail_lines)))
        except FileNotFoundError:
            return ""

    # -- adapter, stop request, trainable state --------------------------------------------------

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    def has_adapter(self) -> bool:
        return all((self.adapter_dir / f).is_file() for f in ADAPTER_FILES)

    def request_stop(self) -> None:
        """Ask the training process to stop after its current step (it polls `stop_requested`)."""
        (self.path / "STOP").write_text(now() + "\n", encoding="utf-8")

    def stop_requested(self) -> bool:
        return (self.path / "STOP").exists()

    def clear_stop(self) -> None:
        """Withdraw a stop request, e.g. before resuming a cancelled run."""
        (self.path / "STOP").unlink(missing_ok=True)

    def has_state(self) -> bool:
        return (self.path / "qpa_state.safetensors").is_file()

    def save_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Save trainable tensors (safetensors) and `meta` (step, optimizer settings) atomically.

        The meta is stored inside the safetensors header too, so tensors and meta cannot disagree;
        ``qpa_state.json`` is a readable copy.
        """
        from safetensors.torch import save_file

        header = json.dumps(meta)
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        path = self.path / "qpa_state.safetensors"
        fd, tmp = tempfile.mkstemp(prefix=".qpa_state.", suffix=".tmp", dir=self.path)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"qpa_meta": header})
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        atomic_write_json(self.path / "qpa_state.json", meta)

    def load_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, meta) from `save_state`; ValueError when the run has none."""
        from safetensors import safe_open

        path = self.path / "qpa_state.safetensors"
        if not path.is_file():
            raise ValueError(
                f"`run` {self.id} has no saved state ({path.name}); it cannot be resumed."
            )
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("qpa_meta", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return tensors, meta

    # -- tables ----------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """One row for run tables: what was trained, how far it got and how well."""
        config, status = self.config, self.status()
        val = self.metrics("val")
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
            "val_perplexity": val[-1].get("perplexity") if val else None,
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
