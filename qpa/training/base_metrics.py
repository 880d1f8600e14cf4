"""The base model's validation metrics, measured once per data selection and cached.

Every run compares itself with the untouched model on the same validation split and protocol.
That number depends only on what the backbone-row cache key already covers (model, protocol,
the encoded split), so it is kept beside those rows as ``base-<key>.json`` and reused by every
later run on the same data.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> cached_base_metrics(folder, "k1", lambda: {"loss": 1.0, "perplexity": 2.718})
{'loss': 1.0, 'perplexity': 2.718}
>>> cached_base_metrics(folder, "k1", lambda: 1 / 0)  # cached: not measured again
{'loss': 1.0, 'perplexity': 2.718}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qpa.runs.files import atomic_write_json, read_json


def cached_base_metrics(
    cache_dir: Path | None, key: str, compute: Callable[[], dict[str, Any]], world=None
) -> dict[str, Any]:
    """The metrics cached for `key` in `cache_dir`, or `compute()`'s, then cached.

    With a `world` of several processes (`qpa.training.distributed`), rank 0's reading decides
    for all of them (`compute` is collective), and rank 0 alone writes.
    """
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"base-{key}.json"
    cached = _read(path)
    if world is not None and world.size > 1:
        cached = world.broadcast(cached)
    if cached is not None:
        return cached
    metrics = compute()
    if world is None or world.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, metrics)
    return metrics


def _read(path: Path) -> dict[str, Any] | None:
    try:
        cached = read_json(path)
    except (OSError, ValueError):
        return None
    return cached if isinstance(cached, dict) and "loss" in cached else None
