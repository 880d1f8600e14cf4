"""Reading and writing files defensively: only regular files, never more than a size cap,
strict JSON (no NaN or Infinity), and a clear error naming the field for anything else. Used by
the run folders, config files and uploads alike; no torch, nothing imported from the engine.

>>> dumps({"ppl": float("inf")})
'{"ppl": null}'
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 16 * 2**20  # a run's JSON files and config files are a few KB


def json_safe(data: Any) -> Any:
    """`data` with every NaN or infinite float replaced by None, so it is valid JSON.

    >>> json_safe({"ppl": float("nan"), "xs": [1.5, float("inf")]})
    {'ppl': None, 'xs': [1.5, None]}
    """
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return data


def dumps(data: Any, **kw: Any) -> str:
    """`data` as strict JSON (non-finite floats as null): what every JSON we write is."""
    return json.dumps(json_safe(data), allow_nan=False, **kw)


@contextlib.contextmanager
def open_regular(path: str | Path, field: str = "file"):
    """`path` open for binary reading if it is a regular file; ValueError naming `field`
    otherwise. Opened without blocking, so a FIFO is refused, not waited on."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"`{field}` = {str(path)!r} is not a regular file.")
        yield f


def read_regular(path: str | Path, limit: int, field: str = "file") -> bytes:
    """The bytes of `path` if it is a regular file of at most `limit` bytes; ValueError naming
    `field` otherwise (a FIFO, a device or /dev/zero would block or never end).

    >>> read_regular("/dev/zero", 10)
    Traceback (most recent call last):
    ...
    ValueError: `file` = '/dev/zero' is not a regular file.
    """
    with open_regular(path, field) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"`{field}` = {str(path)!r} is larger than {limit:,} bytes.")
    return data


def loads(text: str | bytes, what: str) -> Any:
    """Parsed JSON; ValueError naming `what` for malformed or too deeply nested text."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply to be read.") from None
