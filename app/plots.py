"""Plotly figures for the studio: the chunk-size trade-off, the circuit's probabilities and the
training curves. Pure functions of plain numbers (no gradio, no engine).

Figures are written as plotly JSON specs and wrapped without plotly's per-property validation
(`figure`): validating costs ~100 ms a figure, too slow for redrawing on every slider move.

>>> fig = tradeoff_figure([(1024, 90_000, 8), (2048, 106_264, 7)], 2048, 204_100, [])
>>> [trace.name for trace in fig.data]
['QPA parameters', 'qubits N', 'LoRA 204,100', 'your choice']
>>> [p[0] for p in paper_points("gpt2-config", ("lm_head",), 4)], paper_points("smollm2", ("lm_head",), 4)
(['GPT-2 r=4 (paper)'], ())
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

QPA_COLOR = "#7c3aed"
LORA_COLOR = "#ea580c"
QUBIT_COLOR = "#0891b2"
MUTED = "#cbd5e1"
RUN_COLORS = ("#7c3aed", "#ea580c", "#0891b2", "#16a34a", "#db2777", "#ca8a04", "#4f46e5")
QPA_RUN_COLORS = ("#7c3aed", "#0891b2", "#16a34a", "#db2777", "#4f46e5")  # violet first
LORA_RUN_COLORS = ("#ea580c", "#ca8a04", "#b45309")  # orange first
MESSAGE_WIDTH = 56  # characters per line of a message figure (fits a 420 px chart)
FONT = {"family": "Inter, ui-sans-serif, system-ui, sans-serif", "size": 12, "color": "#334155"}

OVER_COLOR = "#dc2626"
# The paper's reported points (paper-notes §3): (label, chunk_size, QPA params, LoRA params),
# each for its model (the names that build it) with rank 4 on lm_head alone.
PAPER_POINTS = {
    ("gpt2-config", "gpt2", "openai-community/gpt2"): ("GPT-2 r=4 (paper)", 2048, 106_264, 204_100),
    ("gemma-config", "google/gemma-2b"): ("Gemma-2 r=4 (paper)", 4096, 173_888, 1_032_192),
}


def paper_points(model: str, target_modules, rank: int, use_dora: bool = False) -> tuple:
    """The paper's points that belong on this shape's chart: its model, rank 4, lm_head only."""
    if rank != 4 or tuple(target_modules) != ("lm_head",) or use_dora:
        return ()
    return tuple(point for names, point in PAPER_POINTS.items() if model in names)


@functools.cache
def _template() -> dict:
    return pio.templates["plotly_white"].to_plotly_json()


def figure(data: list[dict], layout: dict, height: int) -> go.Figure:
    legend = {"orientation": "h", "yanchor": "bottom", "y": 1.01, "xanchor": "left", "x": 0,
              "font": {"size": 11}}  # fmt: skip
    base = {"template": _template(), "height": height, "font": FONT, "legend": legend,
            "hoverlabel": {"font": {"size": 12}}, "margin": {"l": 60, "r": 60, "t": 28, "b": 48}}  # fmt: skip
    return go.Figure({"data": data, "layout": {**base, **layout}}, _validate=False)


def _right_axis(title: str, **extra: Any) -> dict:
    return {
        "title": {"text": title},
        "overlaying": "y",
        "side": "right",
        "showgrid": False,
        **extra,
    }


def line(x, y, name: str, hover: str, **style: Any) -> dict:
    """A scatter trace as plotly JSON."""
    return {"type": "scatter", "x": list(x), "y": list(y), "name": name,
            "hovertemplate": hover + "<extra></extra>", **style}  # fmt: skip


def tradeoff_figure(
    points: Sequence[tuple[int, int, int]],
    current: int,
    lora_params: int,
    paper: Sequence[tuple[str, int, int, int]] = (),
) -> go.Figure:
    """QPA parameters and qubits against chunk size; `points` are (chunk_size, QPA parameters,
    qubits), `lora_params` the baseline's.

    Where QPA has more parameters than LoRA the curve's points turn red and the region above
    the LoRA line says so; `paper` points are drawn with labels below them, off the curve.
    """
    chunks = [p[0] for p in points]
    data = [
        line(chunks, [p[1] for p in points], "QPA parameters", "chunk %{x:,}<br>%{y:,} parameters",
              mode="lines+markers", line={"color": QPA_COLOR, "width": 2.5},
              marker={"size": 6, "color": [OVER_COLOR if p[1] > lora_params else QPA_COLOR
                                           for p in points]}),
        line(chunks, [p[2] for p in points], "qubits N", "chunk %{x:,}<br>%{y} qubits", yaxis="y2",
              mode="lines", line={"color": QUBIT_COLOR, "width": 1.5, "shape": "hv", "dash": "dot"}),
        line([min(chunks), max(chunks)], [lora_params] * 2, f"LoRA {lora_params:,}", "LoRA baseline",
              mode="lines", line={"color": LORA_COLOR, "dash": "dash", "width": 1.5}),
    ]  # fmt: skip
    mine = next((p for p in points if p[0] == current), None)
    over = bool(mine) and mine[1] > lora_params
    if mine:
        star = {
            "symbol": "star",
            "size": 18,
            "color": OVER_COLOR if over else QPA_COLOR,
            "line": {"color": "white", "width": 1.5},
        }
        hover = f"your choice: chunk %{{x:,}}<br>%{{y:,}} = {mine[1] / lora_params:.2%} of LoRA"
        name = "your choice: more than LoRA" if over else "your choice"
        data.append(line([mine[0]], [mine[1]], name, hover, mode="markers", marker=star))
    data += [_paper_point(*point) for point in paper]
    ticks = chunks[:: 1 + len(chunks) // 10]
    layout = {
        "xaxis": {"type": "log", "title": {"text": "chunk size (values per basis state)"},
                  "tickvals": ticks, "ticktext": [_short(t) for t in ticks]},
        "yaxis": {"type": "log", "title": {"text": "trainable parameters"}, "dtick": 1},
        "yaxis2": _right_axis("qubits N", rangemode="tozero"),
        "annotations": [_paper_label(label, chunk, qpa_params)
                        for label, chunk, qpa_params, _ in paper],
    }  # fmt: skip
    top = max(p[1] for p in points)
    if top > lora_params:
        layout["shapes"] = [_above(lora_params, top)]
        layout["annotations"].append(_over_label(lora_params))
    return figure(data, layout, 290)


def _paper_point(label: str, chunk: int, qpa_params: int, base: int) -> dict:
    marker = {"symbol": "diamond-open", "size": 11, "color": "#475569", "line": {"width": 2}}
    share = qpa_params / base
    hover = f"{label}<br>chunk {chunk:,}: {qpa_params:,} = {share:.2%} of LoRA {base:,}"
    return line([chunk], [qpa_params], label, hover, mode="markers", showlegend=False, marker=marker)


def _paper_label(label: str, chunk: int, qpa_params: int) -> dict:
    """Below and right of its point, with an arrow: the curve rises to the left and right."""
    return {"x": math.log10(chunk), "y": math.log10(qpa_params), "text": label,  # log axes
            "showarrow": True, "arrowhead": 0, "arrowcolor": "#94a3b8", "ax": 34, "ay": 34,
            "xanchor": "left", "bgcolor": "rgba(255,255,255,0.85)",
            "font": {"size": 10, "color": "#475569"}}  # fmt: skip


def _above(lora_params: int, top: int) -> dict:
    """A faint red band above the LoRA line: there QPA would train more than LoRA."""
    return {"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": lora_params,
            "y1": top * 1.2, "fillcolor": OVER_COLOR, "opacity": 0.06, "line": {"width": 0},
            "layer": "below"}  # fmt: skip


def _over_label(lora_params: int) -> dict:
    return {"xref": "paper", "x": 0.01, "xanchor": "left", "y": math.log10(lora_params),
            "yshift": 10, "yanchor": "bottom", "text": "above LoRA: QPA has more parameters",
            "showarrow": False, "font": {"size": 10, "color": OVER_COLOR}}  # fmt: skip


def _short(n: int) -> str:
    """1024 → '1K', 1048576 → '1M'."""
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n:,}"


def probs_figure(
    probs: Sequence[float],
    x: Sequence[float],
    n_chunks: int,
    exact: Sequence[float] | None = None,
    measured: str = "",
) -> go.Figure:
    """Probabilities of all 2^N basis states (used ones coloured) and their post-processed x.

    With `exact` (when the bars are noisy or sampled, as `measured` says) the noiseless
    probabilities are drawn over the bars, so the difference shows.
    """
    states = list(range(len(probs)))
    colors = [QPA_COLOR if i < n_chunks else MUTED for i in states]
    name = f"p_i ({measured})" if measured else "p_i = |⟨i|ψ(θ)⟩|²"
    data = [
        {"type": "bar", "x": states, "y": list(probs), "name": name,
         "marker": {"color": colors}, "hovertemplate": "state %{x}<br>p = %{y:.4g}<extra></extra>"},
        line(states[:n_chunks], x[:n_chunks], "x_i fed to the MLP", "state %{x}<br>x = %{y:.4f}",
             yaxis="y2", mode="markers", marker={"color": "#0f172a", "size": 4 if n_chunks > 64 else 6}),
    ]  # fmt: skip
    if exact is not None:
        data.insert(1, line(states, exact, "exact p_i", "state %{x}<br>exact p = %{y:.4g}",
                            mode="lines", line={"color": LORA_COLOR, "width": 1.2,
                                                "shape": "hvh"}))  # fmt: skip
    layout = {
        "xaxis": {"title": {"text": f"basis state i (the first {n_chunks:,} give the chunks)"}},
        "yaxis": {"title": {"text": "probability"}, "rangemode": "tozero"},
        "yaxis2": _right_axis("post-processed x"),
        "bargap": 0.05 if len(states) < 64 else 0,
    }
    return figure(data, layout, 290)


def message_figure(text: str, height: int = 300) -> go.Figure:
    """An empty figure that says why there is nothing to draw, wrapped to fit a half-width
    chart (plotly never wraps, so a long line is cut off at both edges)."""
    lines = [part for line in text.split("\n") for part in textwrap.wrap(line, MESSAGE_WIDTH)]
    note = {"text": "<br>".join(lines), "showarrow": False, "x": 0.5, "y": 0.5,
            "xref": "paper", "yref": "paper", "font": {"size": 13, "color": "#64748b"}}  # fmt: skip
    hidden = {"visible": False}
    return figure([], {"annotations": [note], "xaxis": hidden, "yaxis": hidden}, height)


def curves_figure(series: Sequence[dict]) -> go.Figure:
    """Training loss and validation perplexity against step for several runs, side by side.

    Each item: ``{"label", "method", "train": [(step, loss)], "val": [(step, perplexity)]}``,
    optionally ``"val_assistant"`` (the replies' perplexity), ``"perplexity"`` ("paper": padding
    counted), ``"base"``/``"base_assistant"`` (the base model's perplexities: a dotted reference
    line), ``"best_step"`` (a star) and ``"epochs"`` (passes over the data, named on the axis).
    QPA runs are solid violet-family lines, LoRA baselines dashed orange ones. The perplexity
    panel shows the replies' when every run with evaluations has them.
    """
    if not any(s["train"] or s["val"] for s in series):
        return message_figure("No metrics yet: curves appear after the first evaluation.", 340)
    evaluated = [s for s in series if s["val"]]
    replies = bool(evaluated) and all(s.get("val_assistant") for s in evaluated)
    if replies:
        series = [{**s, "val": s.get("val_assistant", []), "base": s.get("base_assistant")}
                  for s in series]  # fmt: skip
        val_title = "validation perplexity, assistant replies"
    else:
        padded = any(s.get("perplexity") == "paper" for s in evaluated)
        val_title = "validation perplexity, all tokens" + (" (padding counted)" if padded else "")
    data, seen = [], {"lora": 0, "qpa": 0}
    for s in series:
        family = "lora" if s["method"] == "lora" else "qpa"  # QPA never in LoRA's colour
        palette = LORA_RUN_COLORS if family == "lora" else QPA_RUN_COLORS
        style = {"color": palette[seen[family] % len(palette)], "width": 2,
                 "dash": "dash" if family == "lora" else "solid"}  # fmt: skip
        seen[family] += 1
        for axis, key in (("", "train"), ("2", "val")):
            if s[key]:
                steps, values = zip(*s[key], strict=True)
                data.append(line(
                    steps, values, s["label"], f"{s['label']}<br>step %{{x}}: %{{y:.4g}}",
                    legendgroup=s["label"], showlegend=key == "val" or not s["val"],
                    xaxis=f"x{axis}", yaxis=f"y{axis}", line=style, marker={"size": 5},
                    mode="lines" if len(steps) > 30 else "lines+markers",
                ))  # fmt: skip
        data += _best_marker(s, style["color"])
    data += _base_lines(series)
    layout = _curves_layout(val_title, _epochs_text(series))
    return figure(data, layout, 380)


def _best_marker(s: dict, color: str) -> list[dict]:
    """A star on the validation curve at the run's best (or exported) step."""
    value = dict(s["val"]).get(s.get("best_step"))
    if value is None:
        return []
    star = {"symbol": "star", "size": 14, "color": color, "line": {"color": "white", "width": 1}}
    return [line([s["best_step"]], [value], f"{s['label']} best step", f"{s['label']}<br>best "
                 f"step {s['best_step']}: %{{y:.4g}}", mode="markers", marker=star,
                 legendgroup=s["label"], showlegend=False, xaxis="x2", yaxis="y2")]  # fmt: skip


def _base_lines(series: Sequence[dict]) -> list[dict]:
    """The base model's validation perplexity, one dotted level per distinct value."""
    levels = sorted({round(s["base"], 6) for s in series if s.get("base") and s["val"]})
    steps = [step for s in series for step, _ in s["val"]]
    if not levels or not steps:
        return []
    span = [min(steps), max(steps)]
    return [line(span, [v, v], f"base model {v:.3f}" if len(levels) > 1 else "base model",
                 f"base model (no adapter): {v:.4g}", mode="lines", xaxis="x2", yaxis="y2",
                 line={"color": "#0f172a", "dash": "dot", "width": 1.5}) for v in levels]  # fmt: skip


def _epochs_text(series: Sequence[dict]) -> str:
    """'step (1.32 epochs in all)' when the runs plan the same passes over their data."""
    epochs = {round(s["epochs"], 2) for s in series if s.get("epochs")}
    return f"step ({epochs.pop():.2f} epochs in all)" if len(epochs) == 1 else "step"


def _curves_layout(val_title: str, x_title: str) -> dict:
    title = {"xref": "paper", "yref": "paper", "y": 1.0, "yanchor": "bottom", "showarrow": False,
             "font": {"size": 13}}  # fmt: skip
    return {
        "xaxis": {"domain": [0, 0.46], "title": {"text": x_title}},
        "yaxis": {"title": {"text": "training loss"}},
        "xaxis2": {"domain": [0.54, 1], "anchor": "y2", "title": {"text": x_title}},
        "yaxis2": {"anchor": "x2", "title": {"text": "perplexity"}},
        "annotations": [{**title, "x": 0.23, "text": "training loss"},
                        {**title, "x": 0.77, "text": val_title}],
        "legend": {"orientation": "h", "y": -0.22, "yanchor": "top", "x": 0, "xanchor": "left"},
        "margin": {"l": 60, "r": 24, "t": 30, "b": 40},
    }  # fmt: skip
