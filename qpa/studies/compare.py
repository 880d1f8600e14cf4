"""The fair comparison protocol: every variant tuned alike, reported on a held-out test split.

For each variant (`qpa.studies.sweep.VARIANTS`): train it at every learning rate of a shared grid
with the first seed, pick the rate with the lowest validation perplexity, train the other seeds at
that rate, and report the test perplexity (mean ± std over seeds) against the baseline's, with a
Welch t-interval of the difference. The data is split three ways by ``split_seed``; the test split
is evaluated once at the end of each run and chooses nothing. The perplexity is the replies' for
chat data and every token's for plain text.

Runs are named ``<prefix>-<variant>-lr<lr>-s<seed>``, so the grid run at the chosen rate is that
seed's final run, and a comparison started again reuses every finished run (`sweep.run_one`).
The result is a plain dict, saved as ``<runs folder>/<prefix>.compare.json`` and read back by
``compare --report`` and the app's Results tab.

>>> from qpa.config import ModelConfig
>>> plan = plan_comparison(RunConfig(model=ModelConfig("tiny-llama")),
...                        CompareConfig(variants=("lora", "qpa"), lr_grid=(1e-2, 3e-2)), "t")
>>> len(plan.grid_runs()), plan.n_runs, plan.base.data.test_fraction
(4, 8, 0.1)
>>> plan.run_id("qpa", 0.01, 2)
't-qpa-lr0.01-s2'
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qpa.config import COMPARE_TEST_FRACTION, RunConfig
from qpa.runs.run import Run
from qpa.runs.store import check_run_id, runs_root
from qpa.studies.stats import mean_std, welch_interval
from qpa.studies.sweep import VARIANTS, run_one, variant_config
from qpa.tool_config import CompareConfig
from qpa.training.launch import launched_rank

RESULT_SUFFIX = ".compare.json"


@dataclass(frozen=True)
class ComparePlan:
    base: RunConfig  # with a test split
    settings: CompareConfig
    prefix: str

    def run_id(self, variant: str, lr: float, seed: int) -> str:
        return f"{self.prefix}-{variant}-lr{lr:g}-s{seed}"

    def config(self, variant: str, lr: float, seed: int) -> RunConfig:
        config = variant_config(self.base, variant, seed)
        return config.replace(train=config.train.replace(lr=lr))

    def grid(self) -> list[float]:
        return sorted(set(self.settings.lr_grid))

    def grid_runs(self) -> list[tuple[str, float]]:
        """(variant, lr) of every tuning run (seed: the first of `seeds`)."""
        return [(v, lr) for v in self.settings.variants for lr in self.grid()]

    @property
    def n_runs(self) -> int:
        """Runs the whole protocol trains: the grid, plus the other seeds of each variant."""
        extra = len(self.settings.seeds) - 1
        return len(self.grid_runs()) + extra * len(self.settings.variants)


def plan_comparison(base: RunConfig, settings: CompareConfig, prefix: str) -> ComparePlan:
    """The checked plan (names, prefix, every variant's config) before anything is written."""
    from qpa.data.splits import split_sizes
    from qpa.training.loop import validate_config

    unknown = [v for v in settings.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"`variants` entry {unknown[0]!r} is not one of: {', '.join(VARIANTS)}.")
    if not base.data.test_fraction:
        base = base.replace(data=base.data.replace(test_fraction=COMPARE_TEST_FRACTION))
    once = {name: tuple(dict.fromkeys(getattr(settings, name))) for name in ("variants", "seeds")}
    settings = settings.replace(**once)
    plan = ComparePlan(base, settings, prefix)
    check_run_id(plan.run_id(settings.variants[0], plan.grid()[0], settings.seeds[0]), "prefix")
    for variant in settings.variants:
        validate_config(plan.config(variant, plan.grid()[0], settings.seeds[0]))
    split_sizes(plan.base.data)  # a test split leaving no training data fails here
    return plan


def result_path(prefix: str, root: str | Path | None = None) -> Path:
    return runs_root(root) / f"{prefix}{RESULT_SUFFIX}"


def run_comparison(
    plan: ComparePlan,
    root: str | Path | None = None,
    on_run: Callable[[str, int, int], None] | None = None,
    callbacks=(),
) -> dict[str, Any]:
    """Train (or reuse) the grid, pick each variant's rate, train its other seeds; save the result."""
    counter = iter(range(plan.n_runs))
    first = plan.settings.seeds[0]

    def train(variant: str, lr: float, seed: int) -> dict:
        run_id = plan.run_id(variant, lr, seed)
        if on_run is not None:
            on_run(run_id, next(counter), plan.n_runs)
        status = run_one(run_id, plan.config(variant, lr, seed), root, callbacks).status()
        if status.get("state") != "done":  # stopped (Ctrl-C, a cancel): resumed next time
            raise KeyboardInterrupt(f"run {run_id} was stopped; run the comparison again")
        return status["result"]

    tuning = {(v, lr): train(v, lr, first) for v, lr in plan.grid_runs()}
    replies = all("val_assistant_perplexity" in r for r in tuning.values())  # chat data
    metric = "assistant_perplexity" if replies else "perplexity"
    finals = {}
    for variant in plan.settings.variants:
        val = {lr: tuning[variant, lr][f"val_{metric}"] for lr in plan.grid()}
        chosen = min(val, key=val.get)
        runs = {first: tuning[variant, chosen]}
        runs.update({s: train(variant, chosen, s) for s in plan.settings.seeds if s != first})
        finals[variant] = (val, chosen, runs)
    result = tabulate(plan, finals, metric)
    if launched_rank() == 0:  # under `accelerate launch`, rank 0 alone writes
        save_result(result, root)
    return result


def tabulate(plan: ComparePlan, finals: dict, metric: str) -> dict[str, Any]:
    """The comparison as plain data: one row per variant, and what produced it."""
    grid, rows = plan.grid(), []
    for variant, (val, chosen, runs) in finals.items():
        test = [runs[s][f"test_{metric}"] for s in sorted(runs)]
        mean, std = mean_std(test)
        edge = "low" if chosen == grid[0] else "high" if chosen == grid[-1] else ""
        config = plan.config(variant, chosen, 0)
        rows.append({
            "variant": variant, "method": config.adapter.method, "rank": config.adapter.rank,
            "params": next(iter(runs.values()))["trainable_params"], "chosen_lr": chosen,
            "edge": edge, "val_by_lr": {f"{lr:g}": v for lr, v in val.items()},
            "seeds": sorted(runs), "test": test, "test_mean": mean, "test_std": std,
            "wall_time_s": [runs[s]["wall_time"] for s in sorted(runs)],
        })  # fmt: skip
    _compare_with_baseline(rows, plan.settings.baseline)
    data = plan.base.data
    return {
        "prefix": plan.prefix, "model": plan.base.model.model, "corpus": data.corpus,
        "metric": "replies" if metric == "assistant_perplexity" else "all tokens",
        "lr_grid": grid, "seeds": list(plan.settings.seeds),
        "baseline": plan.settings.baseline, "steps": plan.base.train.steps,
        "split": {"val_fraction": data.val_fraction, "test_fraction": data.test_fraction,
                  "split_seed": data.split_seed},
        "runs": plan.n_runs, "device": plan.base.train.device,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": sorted(rows, key=lambda r: (r["method"], r["params"])),
    }  # fmt: skip


def _compare_with_baseline(rows: list[dict], baseline: str) -> None:
    """Add each row's share of the baseline's parameters and its test difference (95% CI)."""
    base = next(r for r in rows if r["variant"] == baseline)
    for row in rows:
        row["share"] = row["params"] / base["params"]
        row["diff_pct"] = 100 * (row["test_mean"] / base["test_mean"] - 1)
        interval = welch_interval(row["test"], base["test"]) if row is not base else None
        row["diff_pct_ci"] = interval and [100 * x / base["test_mean"] for x in interval[1:]]


def save_result(result: dict, root: str | Path | None = None) -> Path:
    """Write the result JSON beside the runs (atomically); returns its path."""
    path = result_path(result["prefix"], root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_result(prefix: str, root: str | Path | None = None) -> dict[str, Any]:
    path = result_path(prefix, root)
    if not path.is_file():
        raise ValueError(
            f"`prefix` = {prefix!r}: no comparison saved at {path}; run `python -m qpa compare`."
        )
    return json.loads(path.read_text(encoding="utf-8"))


def list_results(root: str | Path | None = None) -> list[str]:
    """Prefixes of the comparisons saved under the runs folder, newest first."""
    base = runs_root(root)
    paths = sorted(base.glob(f"*{RESULT_SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.name[: -len(RESULT_SUFFIX)] for p in paths]


def existing_runs(plan: ComparePlan, root: str | Path | None = None) -> int:
    """How many of the plan's tuning runs are already finished (a dry run's "reused")."""
    seed, base = plan.settings.seeds[0], runs_root(root)
    paths = [base / plan.run_id(variant, lr, seed) for variant, lr in plan.grid_runs()]
    return sum(
        Run(p).status().get("state") == "done" for p in paths if (p / "config.json").is_file()
    )
