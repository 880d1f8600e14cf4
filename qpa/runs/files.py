"""The file-level guarantees a run directory is built on: atomic writes, one-time claims,
process probes and secret redaction. No torch here.

Every JSON file is written to a temp file in the same folder, fsynced and renamed over its
target, so a reader (or a process killed mid-write) sees the old file or the new one, never
half. A claim is a file created with its content in one step (hard link of a finished temp
file), so of several processes racing for it exactly one wins and none sees it empty.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_json(folder / "a.json", {"x": 1}); read_json(folder / "a.json")
{'x': 1}
>>> claim_file(folder / "claim.json", {"who": 1}), claim_file(folder / "claim.json", {"who": 2})
(True, False)
>>> redact("token hf_abcdefgh1234", {"HF_TOKEN": "hf_abcdefgh1234"})
'token ***'
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qpa.safe_io import MAX_JSON_BYTES, dumps, loads, read_regular

if TYPE_CHECKING:
    import torch

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
MIN_SECRET_LEN = 6  # shorter values ("1", "true") would redact ordinary words


def now() -> str:
    """The local time as ISO 8601 with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it and rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write `data` as indented JSON atomically (temp file + fsync + `os.replace`)."""
    atomic_write_bytes(path, (dumps(data, indent=2) + "\n").encode("utf-8"))


def read_json(path: str | Path) -> Any:
    """The parsed JSON of `path`; OSError or ValueError when missing, unreadable, not a
    regular file or too deeply nested."""
    return loads(read_regular(path, MAX_JSON_BYTES, Path(path).name), Path(path).name)


def claim_file(path: str | Path, data: Any) -> bool:
    """Create `path` holding `data` as JSON unless it exists; True for the one process that did.

    The content is written to a temp file first and hard-linked into place: `link` fails when
    the name exists, and the name never points at a half-written file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a zombie counts until its parent reaps it)."""
    if pid == os.getpid():
        return True
    if pid <= 0:  # 0 and negative ids name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no pid is that large
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or cannot be probed here
    return True


def secrets_in(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (HF_TOKEN, *_API_KEY, ...)."""
    env = os.environ if env is None else env
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """`text` with every secret-looking environment value replaced by ``***``."""
    for value in secrets_in(env):
        text = text.replace(value, "***")
    return text


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write `tensors` as safetensors with `meta` (JSON) in its header, atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(tensors, metadata={"qpa_meta": json.dumps(meta)}))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) written by `save_tensors`; ValueError when the file is damaged."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("qpa_meta", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors has its own error type for a damaged file
        raise ValueError(f"{Path(path).name} is unreadable: {e}") from None
    return tensors, meta
