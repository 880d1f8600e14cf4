"""Design tab: the QPA shape on the left (a preset, then the fields, the advanced options folded
away), its parameter counts, rank ceiling, trade-off, circuit and probabilities on the right, all
redrawn on every change (no weights are loaded), with the same count as a terminal command."""

from __future__ import annotations

from functools import partial

import gradio as gr

from app import widgets
from app.glossary import EXPLAIN_TITLE, plain_help
from app.handlers import design as h
from app.handlers import shape
from app.state import Studio
from app.wiring import named
from qpa import DEFAULT_MODEL, PRESETS, adaptable_suffixes

INFO = {name: plain_help(name, v["help"]) for name, v in shape.HELP.items()}
CHOICES = {name: list(v.get("choices", ())) for name, v in shape.HELP.items()}
HIDDEN = ",".join(map(str, shape.DEFAULTS["hidden_sizes"]))
QUIET = dict(api_visibility="private", show_progress="hidden")
LIVE = dict(trigger_mode="always_last", show_progress="hidden", concurrency_id="design")


def _initial() -> h.DesignView | None:
    values = {**shape.DEFAULTS, "model": DEFAULT_MODEL}
    try:
        values["n_qubits"] = shape.linked(values, "chunk")[1]
        return h.design_view(values)
    except (ValueError, OSError):
        return None


def _bounds(name: str) -> dict:
    """The field's range from its config dataclass, as gradio's minimum/maximum."""
    meta = shape.HELP[name]
    return {k: meta[m] for k, m in (("minimum", "min"), ("maximum", "max")) if m in meta}


def _number(name: str, label: str, **kw) -> gr.Number:
    """A whole-number box with the field's default, range and help."""
    value = kw.pop("value", shape.DEFAULTS[name])
    return widgets.Number(value, label=label, precision=0, info=INFO[name], **_bounds(name), **kw)


def _slider(name: str, label: str, step: float = 1, **kw) -> gr.Slider:
    """A slider over the field's whole range, starting at its default."""
    b = _bounds(name)
    value = kw.pop("value", shape.DEFAULTS[name])
    return widgets.Slider(
        b["minimum"], b["maximum"], value, step=step, label=label, info=INFO[name], **kw
    )


def _radio(name: str, label: str, **kw) -> gr.Radio:
    return gr.Radio(CHOICES[name], value=shape.DEFAULTS[name], label=label, info=INFO[name], **kw)


def _variant() -> gr.Dropdown:
    return gr.Dropdown(
        shape.VARIANT_CHOICES, value=shape.matching_variant(shape.DEFAULTS),
        label="Preset", elem_id="design-preset",
        info="A named QPA shape, as `python -m qpa train --variant NAME`: it sets every QPA "
        "field (those it does not name to their defaults); `custom` when they match no preset.",
    )  # fmt: skip


def _basic(view: h.DesignView | None) -> dict:
    """Model, targets, rank, depth, chunk size, qubits, MLP widths and entangler."""
    c = {}
    c["model"] = gr.Dropdown(
        list(PRESETS), value=DEFAULT_MODEL, label="Base model", allow_custom_value=True,
        info=INFO["model"], elem_id="design-model",
    )  # fmt: skip
    c["model_status"] = gr.Markdown(elem_id="model-status")
    c["target_modules"] = gr.Dropdown(
        adaptable_suffixes(DEFAULT_MODEL), value=list(shape.DEFAULTS["target_modules"]),
        multiselect=True, label="Target modules", info=INFO["target_modules"],
        allow_custom_value=True,
    )  # fmt: skip
    with gr.Row():
        c["rank"] = _slider("rank", "LoRA rank r")
        c["depth"] = _slider("depth", "Depth L")
    with gr.Row():
        c["chunk_size"] = _number(
            "chunk_size", "Chunk size", value=view.chunk_size if view else shape.DEFAULTS["chunk_size"]
        )
        c["n_qubits"] = widgets.Slider(
            1, shape.MAX_QUBITS, view.n_qubits if view else 1, step=1, label="Qubits N",
            info=plain_help("n_qubits", "Follows the chunk size, ⌈log₂⌈M / chunk⌉⌉; moving it "
                            "sets the chunk size."),
        )  # fmt: skip
    with gr.Row():
        c["hidden_sizes"] = gr.Textbox(
            HIDDEN, label="MLP hidden sizes", scale=1, info=INFO["hidden_sizes"] + " Enter applies."
        )
        c["entangler"] = _radio("entangler", "Entangler", scale=1, min_width=190)
    return c


def _advanced() -> dict:
    """The mapping, start, layer, DoRA and measurement options, folded away."""
    c = {}
    with gr.Accordion("Advanced QPA", open=False, elem_id="design-advanced"):
        with gr.Row():
            c["activation"] = gr.Dropdown(
                CHOICES["activation"], value=shape.DEFAULTS["activation"], label="MLP activation",
                info=INFO["activation"], elem_id="design-activation",
            )  # fmt: skip
            c["fourier_features"] = _number("fourier_features", "Fourier features")
        c["start"] = _radio("start", "Start")
        c["layers"] = _radio("layers", "Layers")
        c["use_dora"] = gr.Checkbox(shape.DEFAULTS["use_dora"], label="DoRA", info=INFO["use_dora"])
        with gr.Row():
            c["dora_magnitude"] = _radio("dora_magnitude", "DoRA magnitude", interactive=False)
            c["dora_norm"] = _radio("dora_norm", "DoRA norm", interactive=False)
        c["shots"] = _number("shots", "Shots", elem_id="shots")
        c["noise"] = _slider("noise", "Noise p", step=0.001, elem_id="noise")
    return c


def _views(view: h.DesignView | None) -> dict:
    """The right-hand side: headline, table, circuit, command, trade-off, probabilities and the
    plain-language explanation."""
    with gr.Accordion(EXPLAIN_TITLE, open=False, elem_id="explain-design"):
        explain = gr.HTML(view.explain if view else "")
    headline = gr.HTML(view.headline if view else "", elem_id="headline")
    with gr.Row(equal_height=False):
        table = gr.Dataframe(
            view.table if view else None, headers=h.TABLE_HEADERS, interactive=False,
            label="Trainable parameters", wrap=True, column_widths=["31%", "24%", "45%"],
            elem_id="param-table", scale=7,
        )  # fmt: skip
        with gr.Column(scale=5, min_width=300):
            gr.Markdown("**The circuit**: R_Y on every qubit, then CNOTs, repeated L times")
            circuit = gr.HTML(view.circuit if view else "", elem_id="circuit")
            command = gr.Code(
                view.command if view else "", language="shell", interactive=False, lines=1,
                wrap_lines=True, label="The same count from a terminal", elem_id="count-command",
            )  # fmt: skip
    with gr.Row(equal_height=False):
        with gr.Column(min_width=300):
            gr.Markdown("**Trade-off**: bigger chunks, fewer qubits, a bigger last layer (◇ paper)")
            tradeoff = gr.Plot(view.tradeoff if view else None, show_label=False, elem_id="tradeoff")
        with gr.Column(min_width=300):
            gr.Markdown("**Probabilities** p_i for random θ (seed 0), and the x_i the MLP reads")
            probs = gr.Plot(view.probs if view else None, show_label=False, elem_id="probs")
    return {"table": table, "headline": headline, "tradeoff": tradeoff, "circuit": circuit,
            "probs": probs, "command": command, "explain": explain}


def build(studio: Studio) -> tuple[dict, dict]:
    """Lay out the Design tab; returns its input components by field name (the variant too)
    and the outputs its handlers redraw by name (the chunk size and qubits, then the views)."""
    view = _initial()
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=340, elem_classes="qpa-controls"):
            gr.Markdown("### Shape")
            c = {"variant": _variant(), **_basic(view)}
            c.update(_advanced())
        with gr.Column(scale=8):
            views = _views(view)
    outputs = {"chunk_size": c["chunk_size"], "n_qubits": c["n_qubits"], **views}
    _wire(studio, c, outputs)
    return c, outputs


def _wire(studio: Studio, c: dict, outputs: dict) -> None:
    """Every control redraws the views; which one moved decides how chunks and qubits follow.
    Afterwards every view says so if a value was refused, and the variant shows the one the
    form matches, else `custom`."""
    form = {k: c[k] for k in shape.FIELDS}

    def redraw(fn, inputs=form, out=outputs) -> dict:
        return named(partial(fn, studio), inputs, out)

    sizing = ("chunk_size", "rank", "target_modules", "layers", "use_dora", "dora_magnitude")
    other = ("depth", "entangler", "activation", "fourier_features", "start", "dora_norm", "shots",
             "noise")  # fmt: skip
    keep = [c[k].input for k in other] + [c["hidden_sizes"].submit, c["hidden_sizes"].blur]
    picked = {"variant": c["variant"], **form}
    set_fields = {**outputs, **{k: c[k] for k in shape.VARIANT_FIELDS}}
    for event in (
        gr.on([c[k].input for k in sizing], **redraw(h.on_chunk), api_name="design_chunk", **LIVE),
        gr.on(keep, **redraw(h.on_change), api_name="design", **LIVE),
        c["n_qubits"].input(**redraw(h.on_qubits), api_name="design_qubits", **LIVE),
        c["variant"].input(**redraw(h.on_variant, picked, set_fields), api_visibility="private",
                           **LIVE),
    ):  # fmt: skip
        event.then(**redraw(h.on_refused), **QUIET).then(
            **named(shape.matching_variant, form, c["variant"]), **QUIET
        )
    c["use_dora"].input(
        h.on_dora, c["use_dora"], [c["dora_magnitude"], c["dora_norm"]],
        api_visibility="private", queue=False,
    )  # fmt: skip
    counted = gr.State(DEFAULT_MODEL)  # the model the counts show
    c["model"].input(
        h.on_model_typed, c["model"], c["model_status"], queue=False, api_visibility="private"
    ).then(
        partial(h.on_model, studio), [c["model"], c["target_modules"], counted],
        [c["target_modules"], c["model"], c["model_status"], counted], api_visibility="private",
    ).success(**redraw(h.on_chunk), api_visibility="private", **LIVE)  # fmt: skip
    gr.api(h.count_api(studio), api_name="count_params", concurrency_limit=8)  # cached and light
