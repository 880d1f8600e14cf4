"""Plotly figures of the Results tab: perplexity against trainable parameters, perplexity against
measurement shots and noise, and gradient variance against qubits. Pure functions of plain
numbers (no gradio, no engine), built on `app.plots`.

>>> fig = params_figure([{"label": "lora", "method": "lora", "params": 1000, "mean": 5.0,
...                       "std": 0.1, "seeds": [0, 1], "share": 1.0}], "all tokens")
>>> [trace.name for trace in fig.data]
['lora']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from app.plots import LORA_COLOR, RUN_COLORS, figure, line, message_figure

BASELINES = ("lora", "dora")  # methods drawn as the baseline (orange squares)
QPA_COLORS = tuple(c for c in RUN_COLORS if c != LORA_COLOR)


def shorten(labels: Sequence[str]) -> tuple[dict[str, str], str]:
    """Labels without the settings they all share (the method word stays), and those settings.

    >>> shorten(["lora steps=2", "qpa-lora depth=2 steps=2"])
    ({'lora steps=2': 'lora', 'qpa-lora depth=2 steps=2': 'qpa-lora depth=2'}, 'steps=2')
    """
    tokens = [label.split() for label in labels]
    shared = [t for t in tokens[0][1:] if all(t in rest[1:] for rest in tokens)] if tokens else []
    short = {" ".join(t): " ".join(x for x in t if x not in shared or x == t[0]) for t in tokens}
    return short, " ".join(shared)


def _errors(stds: Sequence[float | None]) -> dict:
    return {"type": "data", "array": [s or 0 for s in stds], "visible": True, "thickness": 1.2}


def _seeds(seeds: Sequence[int]) -> str:
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"


def params_figure(points: Sequence[dict], metric: str) -> go.Figure:
    """Validation perplexity (mean ± std over seeds) against trainable parameters, log x.

    Each point: ``{"label", "method", "params", "mean", "std", "seeds", "share"}``, `share` the
    parameters as a fraction of the matching LoRA's (None without one); one trace per point so
    the legend names every configuration; baselines are orange squares. Points with ``"base"``
    (and ``"data"``) get the base model's perplexity on that data as a dotted level.
    """
    if not points:
        return message_figure(
            "No finished runs yet. Launch QPA and its LoRA baseline on the Train tab, or run\n"
            "python -m qpa sweep --variants qpa,lora --seeds 0,1,2", 380
        )  # fmt: skip
    data = []
    short, shared = shorten([p["label"] for p in points])
    ordered = sorted(points, key=lambda p: (p["method"] not in BASELINES, p["params"], p["label"]))
    n_base = sum(p["method"] in BASELINES for p in points)
    for i, p in enumerate(ordered):
        base = p["method"] in BASELINES
        share = f"{p['share']:.2%} of LoRA's parameters" if p["share"] else "no matching LoRA run"
        hover = (f"<b>{p['label']}</b><br>{p['params']:,} parameters, {share}<br>"
                 f"PPL %{{y:.3f}} ± {p['std'] or 0:.3f}<br>{_seeds(p['seeds'])}")  # fmt: skip
        marker = {"size": 12 if base else 11, "symbol": "square" if base else "circle",
                  "color": LORA_COLOR if base else QPA_COLORS[(i - n_base) % len(QPA_COLORS)],
                  "line": {"color": "white", "width": 1}}  # fmt: skip
        data.append(line([p["params"]], [p["mean"]], short[p["label"]], hover, mode="markers",
                         marker=marker, error_y=_errors([p["std"]]), meta=p["label"]))  # fmt: skip
    data += _base_levels(points)
    legend_title = {"text": f"all runs: {shared}" if shared else "", "side": "top"}
    layout = {
        "xaxis": {"type": "log", "title": {"text": "trainable parameters"}, **_param_ticks(points)},
        "yaxis": {"title": {"text": f"validation perplexity, {metric}"}},
        "legend": {"orientation": "h", "y": -0.2, "yanchor": "top", "x": 0, "xanchor": "left",
                   "title": legend_title},
    }  # fmt: skip
    return figure(data, layout, 400)


def _base_levels(points: Sequence[dict]) -> list[dict]:
    """The base model's perplexity per data selection, a dotted line across the chart."""
    levels = {(p.get("data") or "", round(p["base"], 6)) for p in points if p.get("base")}
    params = [p["params"] for p in points]
    span = [min(params) / 1.5, max(params) * 1.5]
    return [line(span, [value, value], f"base model{f' ({data})' if len(levels) > 1 else ''}",
                 f"base model (no adapter){f' on {data}' if data else ''}: {value:.4g}",
                 mode="lines", line={"color": "#0f172a", "dash": "dot", "width": 1.5})
            for data, value in sorted(levels)]  # fmt: skip


def _param_ticks(points: Sequence[dict]) -> dict:
    """Tick labels at the points' own counts: runs often sit within one decade, where a log
    axis would print no number at all."""
    values = sorted({p["params"] for p in points})
    values = values[:: 1 + len(values) // 8]
    return {"tickvals": values, "ticktext": [_short_count(v) for v in values], "tickangle": 0}


def _short_count(n: int) -> str:
    """106264 → '106K', 1032192 → '1.03M'."""
    if n >= 1_000_000:
        return f"{n / 1e6:.3g}M"
    return f"{n / 1e3:.3g}K" if n >= 1_000 else str(n)


def _by(items: Sequence[dict], *keys: str) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for item in items:
        groups.setdefault(tuple(item[k] for k in keys), []).append(item)
    return groups


def _shot_traces(points: Sequence[dict], colors: dict) -> list[dict]:
    """Perplexity against shots per (family, noise); exact probabilities as a dashed level."""
    data = []
    for (family, noise), group in _by(points, "family", "noise").items():
        sampled = sorted((p for p in group if p["shots"]), key=lambda p: p["shots"])
        if not sampled:
            continue
        name = family + (f", noise {noise:g}" if noise else "")
        style = {"color": colors[family], "width": 2, "dash": "dot" if noise else "solid"}
        data.append(line([p["shots"] for p in sampled], [p["mean"] for p in sampled], name,
                         f"{name}<br>%{{x:,}} shots: PPL %{{y:.3f}}", mode="lines+markers",
                         line=style, legendgroup=name,
                         error_y=_errors([p["std"] for p in sampled])))  # fmt: skip
        for p in (p for p in group if not p["shots"]):
            span = [sampled[0]["shots"], sampled[-1]["shots"]]
            data.append(line(span, [p["mean"]] * 2, f"{name}, exact", f"{name}<br>exact "
                             f"probabilities: PPL {p['mean']:.3f} ± {p['std'] or 0:.3f}",
                             mode="lines", line={**style, "dash": "dash", "width": 1.5},
                             legendgroup=name))  # fmt: skip
    return data


def _noise_traces(points: Sequence[dict], colors: dict) -> list[dict]:
    """Perplexity against the noise probability per (family, shots), where noise varies."""
    data = []
    for (family, shots), group in _by(points, "family", "shots").items():
        group = sorted(group, key=lambda p: p["noise"])
        if len({p["noise"] for p in group}) < 2:
            continue
        name = f"{family}{f', {shots:,} shots' if shots else ''} against noise"
        data.append(line([p["noise"] for p in group], [p["mean"] for p in group], name,
                         f"{name}<br>noise %{{x:g}}: PPL %{{y:.3f}}", mode="lines+markers",
                         xaxis="x2", yaxis="y2", marker={"symbol": "diamond", "size": 8},
                         line={"color": colors[family], "dash": "dot"},
                         error_y=_errors([p["std"] for p in group])))  # fmt: skip
    return data


def shots_figure(points: Sequence[dict], metric: str) -> go.Figure:
    """Perplexity against measurement shots (left, log x; exact probabilities dashed) and
    against the depolarising noise p (right), for runs of one QPA shape that vary them.

    Each point: ``{"family", "shots", "noise", "mean", "std"}``; shots 0 means exact. One
    colour per family (QPA shape).
    """
    names, shared = shorten(list(dict.fromkeys(p["family"] for p in points)))
    points = [{**p, "family": names[p["family"]]} for p in points]
    colors = {f: QPA_COLORS[i % len(QPA_COLORS)] for i, f in enumerate(names.values())}
    left, right = _shot_traces(points, colors), _noise_traces(points, colors)
    if not left and not right:
        return message_figure(
            "No finished runs vary the shots or the noise of one QPA shape yet. Train it with\n"
            "Design → Advanced QPA → Shots 0 (exact), 100, 1000, … or python -m qpa train --shots 1000",
            320,
        )  # fmt: skip
    shots = sorted({p["shots"] for p in points if p["shots"]})
    split = 0.46 if left and right else 1.0
    y_title = {"text": f"validation perplexity, {metric}"}
    layout = {
        "xaxis": {"type": "log", "title": {"text": "shots per circuit run"}, "tickvals": shots,
                  "ticktext": [f"{n:,}" for n in shots], "domain": [0, split], "visible": bool(left)},
        "yaxis": {"title": y_title, "visible": bool(left)},
        "xaxis2": {"title": {"text": "depolarising noise p per qubit and block"}, "anchor": "y2",
                   "domain": [1 - split, 1] if left else [0, 1]},
        "yaxis2": {"anchor": "x2", "title": y_title if not left else None},
        "legend": {"orientation": "h", "y": -0.24, "yanchor": "top", "x": 0, "xanchor": "left",
                   "title": {"text": f"all runs: {shared}" if shared else "", "side": "top"}},
    }  # fmt: skip
    return figure(left + right, layout, 380)


def variance_figure(rows: Sequence[dict], fits: Sequence[dict], cost: str) -> go.Figure:
    """Gradient variance against qubits (log y), one line per depth; the legend gives each
    depth's fitted factor per added qubit (below 1: an exponential decay, a barren plateau).

    Each row: ``{"n_qubits", "depth", "variance", "samples"}``; each fit: ``{"depth",
    "factor_per_qubit"}``.
    """
    rows = [r for r in rows if r["variance"] > 0]
    if not rows:
        return message_figure("Pick qubits, depths, a cost and samples, then press Compute.", 360)
    factor = {f["depth"]: f["factor_per_qubit"] for f in fits}
    data = []
    for i, ((depth,), group) in enumerate(sorted(_by(rows, "depth").items())):
        group = sorted(group, key=lambda r: r["n_qubits"])
        name = f"L = {depth}" + (f" (×{factor[depth]:.2f} per qubit)" if depth in factor else "")
        data.append(line([r["n_qubits"] for r in group], [r["variance"] for r in group], name,
                         f"L = {depth}, N = %{{x}}<br>Var ∂C/∂θ = %{{y:.3e}}<br>"
                         f"{group[0]['samples']} samples", mode="lines+markers",
                         line={"color": RUN_COLORS[i % len(RUN_COLORS)], "width": 2},
                         marker={"size": 7}))  # fmt: skip
    qubits = sorted({r["n_qubits"] for r in rows})
    layout = {
        "xaxis": {"title": {"text": "qubits N"}, "tickvals": qubits},
        "yaxis": {"type": "log", "title": {"text": f"Var ∂C/∂θ, cost {cost}"},
                  "exponentformat": "power", "dtick": 1 if _decades(rows) > 1 else None},
        "legend": {"orientation": "h", "y": -0.2, "yanchor": "top", "x": 0, "xanchor": "left"},
    }  # fmt: skip
    return figure(data, layout, 380)


def _decades(rows: Sequence[dict]) -> float:
    values = [r["variance"] for r in rows]
    return math.log10(max(values) / min(values))
