"""How long a run will take on this machine, from what earlier runs measured here.

Each training run records its measured throughput in ``qpa_home()/throughput.json``, per model
and method (`Recorder`, a training callback): the conversion of the embedded model, loading,
backbone tokens per second while caching rows, the median seconds of a training step per
example, and of a validation pass per row. `estimate_run` adds up the work a config still
needs: the conversion if the model is not converted yet, the rows its data does not have cached
yet, its steps and validations.

>>> parts = {"convert_s": 30.0, "load_s": 4.0, "cache_s": 60.0, "train_s": 95.0}
>>> describe_estimate({"total_s": 189.0, **parts, "missing": []})
'about 3:09 on this machine: converting the model 0:30, loading 0:04, caching rows 1:00, training 1:35'
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from qpa.config import RunConfig

FILE = "throughput.json"
PARTS = {"convert_s": "converting the model", "load_s": "loading", "cache_s": "caching rows",
         "train_s": "training"}  # fmt: skip


def throughput_path() -> Path:
    from qpa.models.loading import qpa_home

    return qpa_home() / FILE


def measured(model: str) -> dict[str, Any]:
    """What runs measured for `model` on this machine ({} when none did)."""
    from qpa.runs.files import read_json

    try:
        data = read_json(throughput_path())
    except (OSError, ValueError):
        return {}
    return data.get(model, {}) if isinstance(data, dict) else {}


def record(model: str, values: dict[str, Any]) -> None:
    """Merge `values` into the measurements of `model` (atomically; the last writer wins)."""
    from qpa.runs.files import atomic_write_json, read_json

    path = throughput_path()
    try:
        data = read_json(path)
    except (OSError, ValueError):
        data = {}
    entry = data.setdefault(model, {})
    for key, value in values.items():
        entry[key] = {**entry.get(key, {}), **value} if isinstance(value, dict) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)


class Recorder:
    """A training callback timing the phases and steps of one run, recorded when it is done."""

    def __init__(self, config: RunConfig) -> None:
        self.config, self.values = config, {}
        self.phase_start: dict[str, float] = {}
        self.steps: list[float] = []
        self.evals: list[float] = []
        self.last_elapsed = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        kind, now = event["event"], time.monotonic()
        if kind == "prepare":
            phase = event["phase"]
            self.phase_start.setdefault(phase, now)
            if "converting the model" in self.phase_start and phase != "converting the model":
                self.values.setdefault("convert_s", now - self.phase_start["converting the model"])
            if "loading the model" in self.phase_start and phase == "caching rows":
                self.values.setdefault("load_s", now - self.phase_start["loading the model"])
            rate = (event.get("rows") or {}).get("tokens_per_s")
            if rate:
                self.values["row_tokens_per_s"] = rate
        elif kind == "step":
            self.steps.append(event["seconds"] / self.config.train.batch_size)
            self.last_elapsed = event["elapsed"]
        elif kind == "eval" and event["step"] > 0:
            self.evals.append((event["elapsed"] - self.last_elapsed) / max(1, event["tokens"]))
        elif kind == "done" and self.steps:
            method = self.config.adapter.method
            self.values["step_s_per_example"] = {method: statistics.median(self.steps)}
            if self.evals:
                self.values["eval_s_per_row"] = {method: statistics.median(self.evals)}
            record(self.config.model.model, self.values)


def estimate_launch(configs: list[RunConfig]) -> dict[str, Any]:
    """`estimate_run` of runs trained one after the other: only the first converts the model
    and caches the rows they share (one launch's runs differ in the method alone)."""
    parts = [estimate_run(c, first=i == 0) for i, c in enumerate(configs)]
    out = {k: sum(p[k] or 0.0 for p in parts) for k in PARTS}
    missing = sorted({m for p in parts for m in p["missing"]})
    return {"total_s": None if missing else sum(out.values()), **out, "missing": missing}


def estimate_run(config: RunConfig, first: bool = True) -> dict[str, Any]:
    """Seconds `config` should take here: `total_s` and its parts (`PARTS`), or `missing`
    naming what no run has measured yet (then `total_s` is None). With `first` False, an
    earlier run has converted the model and cached the rows."""
    from qpa.models.loading import needs_conversion

    name, method = config.model.model, config.adapter.method
    seen, missing, out = measured(name), [], {}
    out["convert_s"] = seen.get("convert_s") if first and needs_conversion(name) else 0.0
    out["load_s"] = seen.get("load_s", 0.0)  # a converting run counts its loading in convert_s
    work = data_work(config)
    per_token = seen.get("row_tokens_per_s")
    out["cache_s"] = work["uncached_tokens"] / per_token if per_token else None
    if not work["uncached_tokens"] or not first:
        out["cache_s"] = 0.0
    step = seen.get("step_s_per_example", {}).get(method)
    row = seen.get("eval_s_per_row", {}).get(method, 0.0)
    t = config.train
    n_evals = t.steps // t.eval_every + (t.steps % t.eval_every != 0)
    out["train_s"] = None if step is None else (
        t.steps * t.batch_size * step + n_evals * work["val_rows"] * row
    )  # fmt: skip
    missing = [PARTS[k] for k, v in out.items() if v is None]
    total = None if missing else sum(out.values())
    return {"total_s": total, **out, "missing": missing}


def data_work(config: RunConfig) -> dict[str, int]:
    """Backbone tokens of `config`'s data not cached yet, and its validation rows (tokenizes
    the data: about a second for the default corpus once the model is converted)."""
    from qpa.data.splits import build_splits
    from qpa.models.loading import build_model, load_tokenizer
    from qpa.training.loop import features_dir
    from qpa.training.row_stream import cached_examples
    from qpa.training.rows import cache_key, row_widths, token_rows

    tokenizer = load_tokenizer(config.model.model)
    splits = build_splits(config.data, tokenizer)
    model = build_model(config.model.model)  # meta: its config is part of the cache key
    perplexity, uncached = config.train.perplexity, 0
    for encoded in (splits.train, splits.val):
        key = cache_key(config.model.model, model, perplexity, encoded)
        done = cached_examples(features_dir() / f"rows-{key}.safetensors", len(encoded))
        uncached += int(row_widths(encoded, perplexity)[~done].sum())
    val_rows = len(token_rows(splits.val, perplexity).targets)
    return {"uncached_tokens": uncached if config.train.cache_backbone else 0, "val_rows": val_rows}


def describe_estimate(estimate: dict[str, Any]) -> str:
    """One line: the total and its parts, or what has not been measured yet."""
    from qpa.training.phases import clock

    if estimate["total_s"] is None:
        return (
            "no estimate yet: no run on this machine has measured "
            f"{', '.join(estimate['missing'])}; the first run measures it"
        )
    parts = [f"{PARTS[k]} {clock(estimate[k])}" for k in PARTS if estimate.get(k)]
    return f"about {clock(estimate['total_s'])} on this machine: {', '.join(parts)}"
