"""Where runs live: the runs root, run ids, and creating, opening and listing run folders.

Every run is a folder ``runs_root()/<id>/`` (`qpa.runs.run.Run` reads and writes one). An id is
a safe folder name; `new_run_id` gives fresh ones that sort by creation time. `create_run`
claims a new folder (``mkdir`` is the lock: two runs never share one) and writes its status,
versions and, last, its config, so a folder without ``config.json`` is not a run yet.

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
import os
import platform
import re
import secrets
import socket
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path

from qpa.config import RunConfig
from qpa.runs.files import atomic_write_json, now
from qpa.runs.run import Run

_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def runs_root(root: str | Path | None = None) -> Path:
    """`root` if given, else ``$QPA_RUNS``, else ``./runs``."""
    return Path(root if root else os.environ.get("QPA_RUNS") or "runs")


def check_run_id(run_id: str, field: str = "run") -> str:
    """`run_id` if it is a safe folder name (letters, digits, ``._-``; no ``..``), else ValueError."""
    if not isinstance(run_id, str) or not _ID.fullmatch(run_id) or ".." in run_id:
        raise ValueError(
            f"`{field}` = {run_id!r} is not a valid run id; use 1-128 letters, digits, "
            "'.', '_' or '-', without '..' or '/'."
        )
    if run_id[0] in ".-":  # hidden, or read as a flag by every later command
        raise ValueError(f"`{field}` = {run_id!r} must not start with {run_id[0]!r}.")
    return run_id


def _is_run_id(name: str) -> bool:
    return bool(_ID.fullmatch(name)) and ".." not in name and name[0] not in ".-"


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


def new_run_id(label: str) -> str:
    """A fresh id that sorts by creation time: ``YYYYmmdd-HHMMSS-<label>-<hex4>``; the one
    scheme for run folders and launch groups (sweeps name theirs ``PREFIX-VARIANT-sSEED``).

    >>> run_id = new_run_id("lora")
    >>> len(run_id), run_id[8], run_id[15:21]
    (25, '-', '-lora-')
    """
    return f"{datetime.now():%Y%m%d-%H%M%S}-{check_run_id(label, 'label')}-{secrets.token_hex(2)}"


def create_run(
    config: RunConfig,
    root: str | Path | None = None,
    name: str | None = None,
    group: str | None = None,
) -> Run:
    """A new queued run for `config` (resolved), named `name` or `new_run_id(method)`.

    `group` ties runs launched together (a QPA run and its matched LoRA baseline); it is kept
    in status.json, and a run launched alone is its own group.
    """
    if not isinstance(config, RunConfig):
        raise ValueError(f"`config` must be a RunConfig, got {type(config).__name__}.")
    config = config.resolved()
    base = runs_root(root)
    base.mkdir(parents=True, exist_ok=True)
    path = _claim_dir(base, config.adapter.method, name)
    created = now()
    status = {
        "state": "queued", "error": None, "pid": None, "host": socket.gethostname(),
        "created": created, "started": None, "updated": created, "finished": None,
        "step": 0, "total_steps": config.train.steps, "message": "", "group": group or path.name,
    }  # fmt: skip
    atomic_write_json(path / "status.json", status)
    atomic_write_json(path / "versions.json", library_versions())
    atomic_write_json(path / "config.json", config.to_dict())  # last: now it is a run
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
        run_id = new_run_id(method)
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
        if not _is_run_id(path.name) or not path.is_dir():
            continue
        run = Run(path)
        try:
            run.config  # noqa: B018 - skip folders whose config cannot be read
        except (OSError, ValueError, TypeError):
            continue
        runs.append(run)
    return sorted(runs, key=lambda r: (r.status().get("created") or "", r.id), reverse=True)
