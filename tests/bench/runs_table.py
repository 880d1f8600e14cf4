"""Train a list of configs as real runs and print their comparison table (bench helper).

Used by `compare_dora.py` and `bench_layers.py`; each row is one run directory under
`runs_dir`, so its curves can be opened in the app.
"""

from __future__ import annotations

import math
import shlex

from qpa.config import RunConfig
from qpa.flags import config_to_argv
from qpa.runs import create_run
from qpa.train import train


def first_eval(run) -> dict:
    """The run's step-0 validation record (the adapter as initialised)."""
    return next(m for m in run.metrics() if m.get("split") == "val" and m["step"] == 0)


def train_rows(configs: dict[str, RunConfig], runs_dir: str, prefix: str) -> list[dict]:
    """Train each named config as run `prefix-name`; one result dict per row."""
    rows = []
    for name, config in configs.items():
        config = config.resolved()
        run = create_run(config, runs_dir, name=f"{prefix}-{name}")
        result = train(config, run)
        start = first_eval(run)
        rows.append({"name": name, "run": run.id, "config": config, **result,
                     "start_perplexity": start["perplexity"]})  # fmt: skip
        print(f"{name}: val PPL {result['val_perplexity']:.4f} in {result['wall_time']:.0f} s",
              flush=True)  # fmt: skip
    return rows


def print_table(rows: list[dict], baseline: str) -> None:
    """Markdown table: params, % of `baseline`'s, val PPL at step 0 and at the end, wall time."""
    base = next(r for r in rows if r["name"] == baseline)["trainable_params"]
    print("\n| run | trainable params | % of " + baseline + " | val PPL step 0 | val PPL (all) "
          "| val PPL (assistant) | wall time (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        assistant = r.get("val_assistant_perplexity", math.nan)
        print(f"| {r['name']} | {r['trainable_params']:,} | {r['trainable_params'] / base:.2%} "
              f"| {r['start_perplexity']:.3f} | {r['val_perplexity']:.3f} | {assistant:.3f} "
              f"| {r['wall_time']:.0f} |")  # fmt: skip
    print("\nEquivalent commands:")
    for r in rows:
        print(f"  python -m qpa train {shlex.join(config_to_argv(r['config']))} --name {r['run']}")
