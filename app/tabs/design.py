"""Design tab: the QPA shape on the left, its parameter counts, trade-off, circuit and
probabilities on the right, all redrawn on every change (no weights are loaded)."""

from __future__ import annotations

import gradio as gr

from app.handlers import design as h
from qpa import DEFAULT_MODEL, PRESETS, AdapterConfig, ModelConfig, QPAConfig, field_help

DEFAULTS = {
    "model": DEFAULT_MODEL,
    "target_modules": ["lm_head"],
    "rank": 4,
    "chunk_size": 2048,
    "n_qubits": 0,
    "depth": 8,
    "hidden_sizes": "32,64,128,128,64,32,32",
    "entangler": "ladder",
}
LIVE = dict(trigger_mode="always_last", show_progress="hidden", concurrency_id="design")


def _initial() -> h.DesignView | None:
    values = dict(DEFAULTS)
    values["n_qubits"] = h.linked(*values.values(), "chunk")[1]
    try:
        return h.design_view(*values.values())
    except (ValueError, OSError):
        return None


def build() -> dict:
    """Lay out the Design tab; returns its input components by field name."""
    helps = {**field_help(ModelConfig), **field_help(AdapterConfig), **field_help(QPAConfig)}
    info = {k: v["help"] for k, v in helps.items()}
    view = _initial()
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=340, elem_classes="qpa-controls"):
            gr.Markdown("### Shape")
            c = {}
            c["model"] = gr.Dropdown(
                list(PRESETS),
                value=DEFAULTS["model"],
                label="Base model",
                allow_custom_value=True,
                info=info["model"],
                elem_id="design-model",
            )
            c["target_modules"] = gr.Dropdown(
                h.target_choices(DEFAULT_MODEL),
                value=DEFAULTS["target_modules"],
                multiselect=True,
                label="Target modules",
                info=info["target_modules"],
                allow_custom_value=True,
            )
            with gr.Row():
                c["rank"] = gr.Slider(
                    1, 64, DEFAULTS["rank"], step=1, label="LoRA rank r", info=info["rank"]
                )
                c["depth"] = gr.Slider(
                    1, 64, DEFAULTS["depth"], step=1, label="Depth L", info=info["depth"]
                )
            with gr.Row():
                c["chunk_size"] = gr.Number(
                    view.chunk_size if view else DEFAULTS["chunk_size"],
                    label="Chunk size",
                    precision=0,
                    minimum=1,
                    info=info["chunk_size"],
                )
                c["n_qubits"] = gr.Slider(
                    1,
                    24,
                    view.n_qubits if view else 7,
                    step=1,
                    label="Qubits N",
                    info="Follows the chunk size, ⌈log₂⌈M / chunk⌉⌉; moving it sets the chunk size.",
                )
            with gr.Row():
                c["hidden_sizes"] = gr.Textbox(
                    DEFAULTS["hidden_sizes"],
                    label="MLP hidden sizes",
                    scale=1,
                    info=info["hidden_sizes"] + " Enter applies.",
                )
                c["entangler"] = gr.Radio(
                    ["ladder", "ring"],
                    value="ladder",
                    label="Entangler",
                    scale=1,
                    min_width=190,
                    info="CNOT pattern per block.",
                )
        with gr.Column(scale=8):
            headline = gr.HTML(view.headline if view else "")
            with gr.Row(equal_height=False):
                table = gr.Dataframe(
                    view.table if view else None,
                    headers=h.TABLE_HEADERS,
                    interactive=False,
                    label="Trainable parameters",
                    wrap=True,
                    column_widths=["31%", "24%", "45%"],
                    elem_id="param-table",
                    scale=7,
                )
                with gr.Column(scale=5, min_width=300):
                    gr.Markdown("**The circuit**: R_Y on every qubit, then CNOTs, repeated L times")
                    circuit = gr.HTML(view.circuit if view else "", elem_id="circuit")
            with gr.Row(equal_height=False):
                with gr.Column(min_width=300):
                    gr.Markdown(
                        "**Trade-off**: bigger chunks, fewer qubits, a bigger last layer (◇ paper)"
                    )
                    tradeoff = gr.Plot(
                        view.tradeoff if view else None, show_label=False, elem_id="tradeoff"
                    )
                with gr.Column(min_width=300):
                    gr.Markdown(
                        "**Probabilities** p_i for random θ (seed 0), and the x_i the MLP reads"
                    )
                    probs = gr.Plot(view.probs if view else None, show_label=False, elem_id="probs")
    inputs = [c[k] for k in h.FIELDS]
    outputs = [c["chunk_size"], c["n_qubits"], table, headline, tradeoff, circuit, probs]
    follow = [c["chunk_size"].input, c["rank"].input, c["target_modules"].input]
    gr.on(follow, h.on_chunk, inputs, outputs, api_name="design_chunk", **LIVE)
    keep = [
        c["depth"].input,
        c["entangler"].input,
        c["hidden_sizes"].submit,
        c["hidden_sizes"].blur,
    ]
    gr.on(keep, h.on_change, inputs, outputs, api_name="design", **LIVE)
    c["n_qubits"].input(h.on_qubits, inputs, outputs, api_name="design_qubits", **LIVE)
    c["model"].input(
        h.on_model, [c["model"], c["target_modules"]], c["target_modules"], api_visibility="private"
    ).success(h.on_chunk, inputs, outputs, api_visibility="private", **LIVE)
    gr.api(h.count_api, api_name="count_params", concurrency_limit=8)  # cached and light
    return c
