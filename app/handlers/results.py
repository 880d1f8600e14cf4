"""Results tab: every finished run grouped over seeds (`qpa.summarize`), as perplexity against
parameters and as a table; perplexity against shots and noise for runs that vary them (paper
App. G); the saved fair comparisons (``python -m qpa compare``: test perplexity over seeds at
each variant's tuned rate); and the gradient-variance explorer (barren plateaus, App. H).

Results are read from the run folders on every refresh, so runs from the app, ``python -m qpa
train`` and ``python -m qpa sweep`` all show up. The explorer computes in this process, on one
thread, within the studio's `Caps.variance_work`.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app import result_plots
from app.handlers.common import as_int, as_ints, guarded
from app.state import Studio
from qpa import (
    COSTS,
    VarianceConfig,
    comparison_table,
    describe_comparison,
    field_help,
    fit_decay,
    frontier_svg,
    gradient_variance,
    list_results,
    list_runs,
    load_result,
    markdown_table,
    measurement_points,
    one_thread,
    param_points,
    run_record,
    summarize,
)

METRICS = {"all tokens": "perplexity", "assistant tokens": "assistant_perplexity"}
VARIANCE = field_help(VarianceConfig)  # defaults, ranges and help of the explorer's fields
GENERATOR_WORK = 64  # the generator cost's mapping costs about as much as 64 circuit blocks


def summary_rows(studio: Studio) -> list[dict[str, Any]]:
    """Every finished run under the studio's root, grouped over seeds (mean ± std)."""
    return summarize([r for r in map(run_record, list_runs(studio.root)) if r is not None])


def _metric(name: str | None) -> str:
    if (name or "all tokens") not in METRICS:
        raise ValueError(f"`metric` = {name!r} is not one of: {', '.join(METRICS)}.")
    return METRICS[name or "all tokens"]


def results_view(studio: Studio, metric_name: str | None) -> tuple:
    """(parameters figure, Markdown table, shots and noise figure) for the chosen perplexity."""
    metric = _metric(metric_name)
    shown = metric_name or "all tokens"
    rows = summary_rows(studio)
    table = markdown_table(rows) if rows else "*No finished runs yet.*"
    return (
        result_plots.params_figure(param_points(rows, metric), shown),
        table,
        result_plots.shots_figure(measurement_points(rows, metric), shown),
    )


def comparison_view(studio: Studio, prefix: str | None) -> tuple[dict, str, str]:
    """(choices of the saved comparisons, Markdown table, SVG chart) of `prefix` (else the newest).

    The same table and chart as ``python -m qpa compare --markdown/--svg`` draw from the JSON.
    """
    prefixes = list_results(studio.root)
    chosen = prefix if prefix in prefixes else (prefixes[0] if prefixes else None)
    choices = gr.update(choices=prefixes, value=chosen)
    if chosen is None:
        return choices, "*No comparison saved yet: run `python -m qpa compare`.*", ""
    result = load_result(chosen, studio.root)
    text = f"{describe_comparison(result)}\n\n{comparison_table(result)}"
    return choices, text, frontier_svg(result)


def variance_work(qubits: list[int], depths: list[int], samples: int, cost: str) -> int:
    """Amplitude updates the explorer will make: samples × Σ 2^N · (L + the mapping's share)."""
    extra = GENERATOR_WORK if cost == "generator" else 0
    return samples * sum(2**n * (depth + extra) for n in qubits for depth in depths)


def _check_work(studio: Studio, qubits: list[int], depths: list[int], samples: int, cost: str):
    work, cap = variance_work(qubits, depths, samples, cost), studio.caps.variance_work
    if work > cap:
        raise ValueError(
            f"`samples` × Σ 2^N·L = {work:,} amplitude updates is above this studio's cap of "
            f"{cap:,}; use fewer samples, qubits or depths"
            + (" (or run the studio locally, where the cap is higher)." if studio.settings.demo else ".")
        )


# -- event handlers -------------------------------------------------------------------------------


@guarded
def on_refresh(studio: Studio, metric_name: str | None):
    """Refresh (or the perplexity switch): redraw both charts and the table from the runs."""
    return results_view(studio, metric_name)


@guarded
def on_comparison(studio: Studio, prefix: str | None):
    """Refresh or a choice of comparison: its table and its parameters-vs-test-perplexity chart."""
    return comparison_view(studio, prefix)


@guarded
def on_variance(studio: Studio, qubits, depths, cost: str | None, samples):
    """Compute: gradient variances over the grid (within the studio's cap), and their fits."""
    cost = cost or VARIANCE["cost"]["default"]
    samples = as_int("samples", samples)
    grid = sorted(set(as_ints("qubits", qubits))), sorted(set(as_ints("depths", depths)))
    _check_work(studio, *grid, samples, cost)
    with one_thread():
        rows = gradient_variance(*grid, samples, cost)
    fits = fit_decay(rows)
    seconds = sum(r["seconds"] for r in rows)
    note = f"{len(rows)} points in {seconds:.1f} s. Cost: {COSTS[cost]}." + _fit_text(fits)
    return result_plots.variance_figure(rows, fits, cost), note


def _fit_text(fits: list[dict]) -> str:
    """The fitted decay per depth, in words."""
    if not fits:
        return ""
    parts = [f"L = {f['depth']}: ×{f['factor_per_qubit']:.3f}" for f in fits]
    return " Variance per added qubit (least-squares fit of log₂ Var): " + "; ".join(parts) + "."
