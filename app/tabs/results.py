"""Results tab: finished runs grouped over seeds (perplexity against parameters, and the
table), perplexity against measurement shots and noise, the saved fair comparisons and the
gradient-variance explorer."""

from __future__ import annotations

from functools import partial

import gradio as gr

from app.handlers import results as h
from app.state import Studio
from qpa import COSTS

V = h.VARIANCE


def _explorer(studio: Studio) -> None:
    """Gradient variance against qubits for random circuits: is there a barren plateau?"""
    gr.Markdown(
        "### Gradient variance (barren plateaus, paper App. H)\nFor each qubit count N and depth "
        "L, random angles θ ~ U(−π, π) are drawn and ∂C/∂θ computed exactly; a variance falling "
        "exponentially with N is a barren plateau, where training gets no signal."
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=300, elem_classes="qpa-controls"):
            qubits = gr.Textbox(
                ",".join(map(str, V["qubits"]["default"])), label="Qubits N",
                info=f"{V['qubits']['help']} Comma-separated, e.g. 2,4,6.",
                elem_id="variance-qubits",
            )  # fmt: skip
            depths = gr.Textbox(
                ",".join(map(str, V["depths"]["default"])), label="Depths L",
                info=f"{V['depths']['help']} Comma-separated.", elem_id="variance-depths",
            )
            cost = gr.Radio(
                list(COSTS), value=V["cost"]["default"], label="Cost C",
                info="; ".join(f"{k}: {v}" for k, v in COSTS.items()) + ".",
            )  # fmt: skip
            samples = gr.Slider(
                10, 2000, V["samples"]["default"], step=10, label="Samples",
                info=f"{V['samples']['help']} More give a steadier variance.",
            )  # fmt: skip
            compute = gr.Button("Compute", variant="primary", elem_id="variance-compute")
        with gr.Column(scale=8):
            figure = gr.Plot(show_label=False, elem_id="variance")
            note = gr.Markdown(elem_id="variance-note")
    compute.click(
        partial(h.on_variance, studio), [qubits, depths, cost, samples], [figure, note],
        api_name="gradient_variance", concurrency_limit=1,
    )  # fmt: skip


def build(studio: Studio) -> gr.Button:
    """Lay out the Results tab; returns its refresh button (the tab's select event clicks it)."""
    with gr.Row():
        gr.Markdown(
            "### Results\nEvery finished run under the runs folder; runs that differ only in "
            "their seed are one point (mean ± std over seeds). Compare variants with "
            "`python -m qpa sweep`."
        )
        refresh = gr.Button("Refresh", size="sm", scale=0, min_width=120, elem_id="results-refresh")
    metric = gr.Radio(
        list(h.METRICS), value="all tokens", label="Validation perplexity over",
        info="Assistant tokens: only the replies of chat data (every token of plain text).",
    )  # fmt: skip
    with gr.Row(equal_height=False):
        with gr.Column(scale=7):
            params = gr.Plot(show_label=False, elem_id="results-params")
        with gr.Column(scale=5):
            gr.Markdown("**Shots and noise** (paper App. G): one QPA shape, measured differently")
            shots = gr.Plot(show_label=False, elem_id="results-shots")
    table = gr.Markdown(elem_id="results-table")
    outputs = [params, table, shots]
    show = partial(h.on_refresh, studio)
    refresh.click(show, metric, outputs, api_name="results")
    metric.input(show, metric, outputs, api_visibility="private")
    _comparison(studio, refresh)
    _explorer(studio)
    return refresh


def _comparison(studio: Studio, refresh: gr.Button) -> None:
    """A saved fair comparison: its table and its parameters-vs-test-perplexity chart."""
    gr.Markdown(
        "### Fair comparison (test split)\nEach variant tuned on one learning-rate grid on "
        "validation, then trained over seeds at its best rate; test perplexity, never used to "
        "choose. Run `python -m qpa compare --prefix NAME` (add `--dry-run` to see the plan)."
    )
    prefix = gr.Dropdown([], label="Comparison", elem_id="compare-prefix", allow_custom_value=True)
    with gr.Row(equal_height=False):
        with gr.Column(scale=6):
            chart = gr.HTML(elem_id="compare-chart")
        with gr.Column(scale=6):
            table = gr.Markdown(elem_id="compare-table")
    show = partial(h.on_comparison, studio)
    refresh.click(show, prefix, [prefix, table, chart], api_name="comparison")
    prefix.input(show, prefix, [prefix, table, chart], api_visibility="private")
