"""A comparison result (`qpa.studies.compare`) as a Markdown table, a dry-run plan and an SVG chart.

The chart is test perplexity (mean ± std over seeds) against trainable parameters on a log axis,
one line per method family (LoRA's ranks, QPA's shapes): where QPA's line lies below LoRA's at
equal parameters, QPA wins. It is written by hand as SVG, so ``assets/`` images and the app's
Results tab draw the same picture from the same JSON without a plotting dependency.

>>> row = {"variant": "lora", "method": "lora", "params": 1000, "share": 1.0, "chosen_lr": 0.01,
...        "edge": "", "seeds": [0, 1], "test_mean": 3.5, "test_std": 0.02, "diff_pct": 0.0,
...        "diff_pct_ci": None}
>>> result = {"rows": [row], "lr_grid": [0.003, 0.01, 0.03], "seeds": [0, 1], "metric": "replies",
...           "baseline": "lora", "model": "tiny-llama", "corpus": "chatterbot", "steps": 2}
>>> comparison_table(result).splitlines()[-1]
'| lora | 1,000 | 100% | 0.01 | – | 3.500 ± 0.020 (2) | – |'
>>> frontier_svg(result).startswith("<svg")
True
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

COLORS = {"lora": "#e8710a", "qpa-lora": "#1a73e8"}
TOP = 50  # the plot area's top edge, under the title and the legend


def describe_comparison(result: dict[str, Any]) -> str:
    """One line: model, corpus, metric, steps, grid and seeds."""
    grid = ", ".join(f"{x:g}" for x in result["lr_grid"])
    return (
        f"{result['model']} on {result['corpus']}, {result['steps']} steps; test perplexity on "
        f"{result['metric']}; lr grid {{{grid}}} tuned on validation with seed "
        f"{result['seeds'][0]}, then seeds {', '.join(map(str, result['seeds']))} at the chosen rate."
    )


def comparison_table(result: dict[str, Any]) -> str:
    """Markdown: parameters, chosen rate (and grid edge), test mean ± std (seeds), vs baseline."""
    base = result["baseline"]
    lines = [
        f"| variant | params | % of {base} | chosen lr | on grid edge | test PPL (seeds) | "
        f"vs {base}, 95% CI |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for r in result["rows"]:
        ci = r["diff_pct_ci"]
        diff = (
            "–"
            if r["variant"] == base
            else f"{r['diff_pct']:+.1f}%"
            + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else " (one seed: no CI)")
        )
        lines.append(
            f"| {r['variant']} | {r['params']:,} | {r['share']:.0%} | {r['chosen_lr']:g} | "
            f"{r['edge'] or '–'} | {r['test_mean']:.3f} ± {r['test_std']:.3f} "
            f"({len(r['seeds'])}) | {diff} |"
        )
    return "\n".join(lines)


def format_plan(plan, reused: int) -> str:
    """A dry run's text: the settings, the grid and the number of runs."""
    s = plan.settings
    grid = ", ".join(f"{x:g}" for x in plan.grid())
    data = plan.base.data
    return "\n".join([
        f"compare {len(s.variants)} variants: {', '.join(s.variants)} (baseline {s.baseline})",
        f"model {plan.base.model.model}, corpus {data.corpus}, {plan.base.train.steps} steps, "
        f"device {plan.base.train.device}",
        f"split by seed {data.split_seed}: validation {data.val_fraction:g}, test "
        f"{data.test_fraction:g}, training the rest",
        f"lr grid ({len(plan.grid())}): {grid}; tuned with seed {s.seeds[0]}",
        f"seeds at the chosen rate: {', '.join(map(str, s.seeds))}",
        f"runs: {len(plan.grid_runs())} tuning + {plan.n_runs - len(plan.grid_runs())} more "
        f"seeds = {plan.n_runs} ({reused} tuning runs already finished, reused)",
        f"run ids: {plan.prefix}-VARIANT-lrLR-sSEED under the runs folder; result "
        f"{plan.prefix}.compare.json beside them",
    ])  # fmt: skip


def _scale(lo: float, hi: float, a: float, b: float, log: bool = False):
    f = math.log10 if log else float
    lo, hi = f(lo), f(hi)
    span = (hi - lo) or 1.0
    return lambda v: a + (f(v) - lo) / span * (b - a)


def frontier_svg(result: dict[str, Any], width: int = 640, height: int = 400) -> str:
    """Test perplexity against parameters (log x), LoRA and QPA as two lines with error bars."""
    rows = result["rows"]
    xs, lows, highs = [r["params"] for r in rows], [r["test_mean"] - r["test_std"] for r in rows], \
        [r["test_mean"] + r["test_std"] for r in rows]  # fmt: skip
    pad = 0.05 * ((max(highs) - min(lows)) or 1)
    x = _scale(min(xs) / 1.5, max(xs) * 1.5, 70, width - 20, log=True)
    y = _scale(min(lows) - pad, max(highs) + pad, height - 50, TOP)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">'
        f"{escape(result['model'])} · {escape(result['corpus'])}: test perplexity "
        f"({escape(result['metric'])}) vs parameters</text>",
        f'<line x1="70" y1="{height - 50}" x2="{width - 20}" y2="{height - 50}" stroke="#444"/>',
        f'<line x1="70" y1="{TOP}" x2="70" y2="{height - 50}" stroke="#444"/>',
        _legend(),
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">trainable parameters '
        "(log scale)</text>",
        f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" '
        'text-anchor="middle">test perplexity (mean ± std)</text>',
    ]
    out += _axis_ticks(xs, lows, highs, x, y, height)
    for method, color in COLORS.items():
        family = sorted((r for r in rows if r["method"] == method), key=lambda r: r["params"])
        if len(family) > 1:
            path = " ".join(f"{x(r['params']):.1f},{y(r['test_mean']):.1f}" for r in family)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
        out += [_point(r, x, y, color) for r in family]
    return "\n".join([*out, "</svg>"]) + "\n"


def _axis_ticks(xs, lows, highs, x, y, height: int) -> list[str]:
    out = []
    for k in range(int(math.floor(math.log10(min(xs) / 1.5))), int(math.log10(max(xs) * 1.5)) + 1):
        if x(10**k) >= 70:
            out.append(f'<text x="{x(10**k):.1f}" y="{height - 34}" text-anchor="middle">'
                       f"{10**k:,}</text>")  # fmt: skip
    lo, hi = min(lows), max(highs)
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        out.append(f'<line x1="70" y1="{y(v):.1f}" x2="{x(max(xs) * 1.5):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#e5e5e5"/><text x="64" y="{y(v) + 4:.1f}" text-anchor="end">'
                   f"{v:.3f}</text>")  # fmt: skip
    return out


def _point(r: dict, x, y, color: str) -> str:
    cx, cy = x(r["params"]), y(r["test_mean"])
    top, bottom = y(r["test_mean"] + r["test_std"]), y(r["test_mean"] - r["test_std"])
    shape = (f'<rect x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" fill="{color}"/>'
             if r["method"] == "lora" else f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" '
             f'fill="{color}"/>')  # fmt: skip
    return (
        f"<g><title>{escape(r['variant'])}: {r['params']:,} params, lr {r['chosen_lr']:g}, "
        f"{r['test_mean']:.3f} ± {r['test_std']:.3f}</title>"
        f'<line x1="{cx:.1f}" y1="{top:.1f}" x2="{cx:.1f}" y2="{bottom:.1f}" stroke="{color}"/>'
        f'{shape}<text x="{cx + 6:.1f}" y="{cy - 6:.1f}" fill="#333">{escape(r["variant"])}'
        "</text></g>"
    )


def _legend() -> str:
    """One line under the title: LoRA's squares and QPA's circles."""
    names = {"lora": "LoRA at ranks 1-8", "qpa-lora": "QPA shapes"}
    items = [f'<rect x="{80 + 150 * i}" y="26" width="10" height="10" fill="{c}"/>'
             f'<text x="{95 + 150 * i}" y="35">{names[m]}</text>'
             for i, (m, c) in enumerate(COLORS.items())]  # fmt: skip
    return "<g>" + "".join(items) + "</g>"
