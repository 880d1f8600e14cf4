"""How long a run will take on this machine, from what earlier runs measured here.

Each training run records its measured throughput in ``qpa_home()/throughput.json``, per model
and method (`Recorder`, a training callback): the conversion of the embedded model, loading,
backbone tokens per second while caching rows, the median seconds of a training step per
example, and of a validation pass per row; a run started by ``python -m qpa train`` also records
its process's start-up (`StartRecorder`). `estimate_run` adds up the work a config still needs:
the start-up, the conversion if the model is not converted yet, the rows its data does not have
cached yet, its steps and validations.

>>> parts = {"convert_s": 30.0, "load_s": 4.0, "cache_s": 60.0, "train_s": 95.0}
>>> describe_estimate({"total_s": 189.0, **parts, "missing": []})
'about 3:09 on this machine: converting the model 0:30, loading 0:04, caching rows 1:00, training 1:35'
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from qpa.config import RunConfig

FILE = "throughput.json"
PARTS = {"start_s": "starting", "convert_s": "converting the model", "load_s": "loading",
         "cache_s": "caching rows", "train_s": "training"}  # fmt: skip


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


def process_age_s() -> float | None:
    """Seconds since this process started (from ``/proc`` on Linux; None elsewhere)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


class StartRecorder:
    """A training callback for a process started to train one run (``python -m qpa train``, as
    the app's queue starts each run): at the run's first event it records how long the process
    took to get there (the interpreter, the imports, the command's checks) as ``start_s``."""

    def __init__(self, config: RunConfig) -> None:
        self.model, self.done = config.model.model, False

    def __call__(self, event: dict[str, Any]) -> None:
        age = None if self.done else process_age_s()
        self.done = True
        if age is not None:
            record(self.model, {"start_s": age})


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
    out["start_s"] = seen.get("start_s", 0.0)  # each run is a process of its own
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


def data_work(config: RunConfig, splits=None) -> dict[str, int]:
    """Backbone tokens of `config`'s data not cached yet, and its validation and test rows
    (tokenizes the data unless given its `splits`: about a second for the default corpus once
    the model is converted)."""
    from qpa.data.splits import build_splits
    from qpa.models.loading import build_model, load_tokenizer
    from qpa.training.loop import features_dir
    from qpa.training.row_stream import cached_examples
    from qpa.training.rows import cache_key, row_widths, token_rows

    if splits is None:
        splits = build_splits(config.data, load_tokenizer(config.model.model))
    model = build_model(config.model.model)  # meta: its config is part of the cache key
    perplexity, uncached = config.train.perplexity, 0
    for encoded in (splits.train, splits.val):
        key = cache_key(config.model.model, model, perplexity, encoded)
        done = cached_examples(features_dir() / f"rows-{key}.safetensors", len(encoded))
        uncached += int(row_widths(encoded, perplexity)[~done].sum())
    val_rows = len(token_rows(splits.val, perplexity).targets)
    test_rows = len(token_rows(splits.test, perplexity).targets) if splits.test is not None else 0
    return {"uncached_tokens": uncached if config.train.cache_backbone else 0, "val_rows": val_rows,
            "test_rows": test_rows}  # fmt: skip


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


# -- before launch: a short measured warm-up ------------------------------------------------------

WARMUP_STEPS = 3  # timed training steps (their median counts), after one that warms up


def warmup_blocker(config: RunConfig) -> str | None:
    """Why `config` cannot be warmed up without downloading or converting its model (a dry run
    does neither), or None when it can."""
    from qpa.constants import DEFAULT_MODEL
    from qpa.models.loading import TINY_PRESETS, needs_conversion

    name = config.model.model
    if name in TINY_PRESETS or Path(name).expanduser().is_dir():
        return None
    if name == DEFAULT_MODEL:
        return "the embedded model is converted on its first use" if needs_conversion(name) else None
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, "config.json"), str):
        return f"`model` = {name!r} is not downloaded yet (a dry run downloads no model)"
    return None


def measure_warmup(config: RunConfig, steps: int = WARMUP_STEPS) -> dict[str, Any]:
    """Time `config`'s loading, `steps` training steps on its first batch (after a first, untimed
    one) and the evaluation of its rows on its device; backbone rows computed on the way (the
    cached path's: those of that batch alone) are timed apart. Nothing is written: rows already
    cached are read, new ones stay in memory, and no run folder exists."""
    import resource

    import torch

    from qpa.training.loop import batch_examples, features_dir, make_optimizer, train_step
    from qpa.training.precision import grad_scaler
    from qpa.training.session import prepare, split_loss

    tic = time.perf_counter()
    session = prepare(config, cache_dir=features_dir(), store_rows=False)
    load_s = time.perf_counter() - tic
    optimizer = make_optimizer(session)
    scaler = grad_scaler(session.device, config.train.precision)

    def timed(work) -> float:  # seconds of `work`, less the backbone rows it computed
        rows, tic = _row_seconds(session), time.perf_counter()
        work()
        _sync(session.device)
        return time.perf_counter() - tic - (_row_seconds(session) - rows)

    if session.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(session.device)
    train_step(session, optimizer, 0, scaler)  # lazy initialisation, the first batch's rows
    step_s = statistics.median(  # the first batch again: no more rows to compute
        timed(lambda: train_step(session, optimizer, 0, scaler)) for _ in range(steps)
    )
    session.model.eval()  # an evaluation's cost per row, on rows the first step made ready
    t = config.train
    batch = batch_examples(len(session.splits.train), t.batch_size, t.seed, 0)
    with torch.no_grad():
        eval_s = timed(lambda: split_loss(session, "train", batch))
    rows = session.rows["train"].select(batch)
    work = data_work(config, session.splits)  # read before anything else could store rows
    tokens = sum(s.computed_tokens for s in session.streams.values())
    hidden = [s.rows.hidden for s in session.streams.values()]
    ready = [s.n_ready / max(1, s.n_examples) for s in session.streams.values()]
    return {
        "device": str(session.device), "load_s": load_s, "step_s": step_s,
        "eval_s_per_row": eval_s * _computed_share(session) / max(1, len(rows)),
        "row_tokens_per_s": tokens / _row_seconds(session) if tokens else None,
        "head_only": session.head_only, "warmup_steps": steps, **work,
        "ram_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 + sum(
            h.numel() * h.element_size() * (1 - r) for h, r in zip(hidden, ready, strict=True)),
        "gpu_bytes": torch.cuda.max_memory_allocated(session.device)
        if session.device.type == "cuda" else None,
    }  # fmt: skip


def _computed_share(session) -> float:
    """The share of its rows an evaluation of the validation split computes (it computes the
    rows all examples share once): seconds per row computed × this = seconds per row counted."""
    from qpa.training.rows import alike_rows

    val = session.rows["val"]
    alike = alike_rows(session.splits.val, val, session.config.train.perplexity)
    return 1 - (val.n_examples - 1) * alike / max(1, len(val.targets))


def _row_seconds(session) -> float:
    return sum(s.seconds for s in session.streams.values())


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warmup_estimate(config: RunConfig, steps: int = WARMUP_STEPS) -> dict[str, Any]:
    """Expected wall time and peak memory of `config` on this device, projected from
    `measure_warmup`: loading, the rows no run has cached yet, every step, and every evaluation
    (the start, each `eval_every`, the base model's and the test split's, when it has one)."""
    m = measure_warmup(config, steps)
    rate = m["row_tokens_per_s"]
    cache_s = m["uncached_tokens"] / rate if m["head_only"] and rate else 0.0
    t = config.train
    n_evals = t.evaluations + 2  # the start and the base model's too
    eval_rows = n_evals * m["val_rows"] + m["test_rows"]
    parts = {"load_s": m["load_s"], "cache_s": cache_s, "train_s": t.steps * m["step_s"],
             "eval_s": eval_rows * m["eval_s_per_row"]}  # fmt: skip
    return {**m, **parts, "total_s": sum(parts.values()), "steps": t.steps, "evaluations": n_evals}


def describe_warmup(estimate: dict[str, Any]) -> str:
    """What a dry run prints: the projected wall time and peak memory, labelled an estimate.

    >>> print(describe_warmup({"device": "cpu", "warmup_steps": 3, "total_s": 95.0, "load_s": 2.0,
    ...     "cache_s": 40.0, "train_s": 45.0, "eval_s": 8.0, "steps": 300, "step_s": 0.15,
    ...     "evaluations": 14, "ram_bytes": 1.5 * 2**30, "gpu_bytes": None}))
    estimate (projected from a 3-step warm-up on cpu, not a measurement of the run):
      wall time about 1:35: loading 0:02, caching rows 0:40, 300 steps 0:45 (0.150 s each), 14 evaluations 0:08
      peak memory about 1.50 GiB of RAM
    """
    from qpa.training.phases import clock

    e = estimate
    parts = [f"loading {clock(e['load_s'])}"]
    if e["cache_s"]:
        parts.append(f"caching rows {clock(e['cache_s'])}")
    parts += [f"{e['steps']:,} steps {clock(e['train_s'])} ({e['step_s']:.3f} s each)",
              f"{e['evaluations']} evaluations {clock(e['eval_s'])}"]  # fmt: skip
    memory = f"{e['ram_bytes'] / 2**30:.2f} GiB of RAM"
    if e["gpu_bytes"] is not None:
        memory += f" and {e['gpu_bytes'] / 2**30:.2f} GiB of GPU memory ({e['device']})"
    return (
        f"estimate (projected from a {e['warmup_steps']}-step warm-up on {e['device']}, not a "
        f"measurement of the run):\n  wall time about {clock(e['total_s'])}: {', '.join(parts)}\n"
        f"  peak memory about {memory}"
    )
