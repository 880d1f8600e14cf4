"""Train tab: launch QPA and its matched LoRA baseline as background runs, watch their progress
and curves (polled from the run directories), stop them, see the equivalent CLI commands."""

from __future__ import annotations

from functools import partial

import gradio as gr

from app import widgets
from app.glossary import EXPLAIN_TITLE, TRAIN_EXPLAINER, plain_help
from app.handlers import data as dh
from app.handlers import train as h
from app.handlers import zerogpu
from app.settings import Caps
from app.state import Studio
from app.wiring import named
from qpa import DataConfig, TrainConfig, field_help

POLL_S = 1.5  # seconds between progress refreshes
FIELDS = {**field_help(TrainConfig), **field_help(DataConfig)}
HELP = {k: plain_help(k, v["help"]) for k, v in FIELDS.items()}
# A run card's Stop button names its run; this page-wide listener hands it to #stop-one.
STOP_ONE_JS = (
    "() => { document.addEventListener('click', (e) => { const b = e.target.closest"
    "('[data-stop-run]'); if (!b) return; window.qpaStopRun = b.dataset.stopRun;"
    " document.querySelector('#stop-one')?.click(); }); }"
)
TRAIN_HELP = field_help(TrainConfig)
DEFAULT = {k: v["default"] for k, v in FIELDS.items()}  # the CLI's defaults, one source


def start_values(caps: Caps) -> dict:
    """The form's first values: the config's defaults, within this studio's caps."""
    capped = {k: min(DEFAULT[k], getattr(caps, k)) for k in ("steps", "batch_size", "max_length")}
    return {**DEFAULT, **capped, "max_examples": caps.max_examples, "source": dh.SOURCES[0],
            "upload": None}  # fmt: skip


def _whole(value: int, label: str, name: str, **kw) -> gr.Number:
    return widgets.Number(value, label=label, precision=0, info=HELP[name], **kw)


def _choice(name: str, label: str) -> gr.Radio:
    field = TRAIN_HELP[name]
    return gr.Radio(list(field["choices"]), value=field["default"], label=label, info=HELP[name])


def _settings(caps: Caps) -> dict:
    """What to train and for how long, and what that means (epochs, warnings)."""
    f, start = {}, start_values(caps)
    f["plan"] = gr.Radio(
        list(h.PLANS),
        value=next(iter(h.PLANS)),
        label="What to train",
        info="The baseline is plain LoRA with the same targets, rank, data and seed.",
    )
    with gr.Row():
        f["steps"] = _whole(start["steps"], "Steps", "steps", minimum=1, maximum=caps.steps)
        f["batch_size"] = _whole(
            start["batch_size"], "Batch size", "batch_size", minimum=1, maximum=caps.batch_size
        )
    f["plan_text"] = gr.Markdown(h.plan_text(start), elem_id="plan", elem_classes="qpa-plan")
    with gr.Accordion("More training settings", open=False):
        f["lr"] = gr.Number(DEFAULT["lr"], label="Learning rate", minimum=0, info=HELP["lr"])
        f["eval_every"] = _whole(DEFAULT["eval_every"], "Validate every", "eval_every", minimum=1)
        f["patience"] = _whole(DEFAULT["patience"], "Patience", "patience", minimum=0)
        f["seed"] = _whole(DEFAULT["seed"], "Seed", "seed", minimum=0)
        f["loss_on"] = _choice("loss_on", "Loss on")
        f["perplexity"] = _choice("perplexity", "Perplexity")
    return f


def _data(studio: Studio, model: gr.Dropdown) -> dict:
    """The corpus: chatterbot topics or an upload, checked on arrival, previewed on demand."""
    f, caps = {}, studio.caps
    with gr.Accordion("Data", open=True):
        f["source"] = gr.Radio(
            list(dh.SOURCES),
            value=dh.SOURCES[0],
            label="Corpus",
            info="The embedded chatterbot chat corpus, or your own file.",
        )
        f["topics"] = gr.Dropdown(
            dh.topics(), value=list(DEFAULT["topics"]), multiselect=True,
            label="Topics (none picked: all)", info=HELP["topics"],
        )  # fmt: skip
        f["upload"] = gr.File(
            label="Upload (.txt .md .jsonl .csv .yml)", file_types=dh.UPLOAD_TYPES,
            type="filepath", height=130, visible=False,
        )  # fmt: skip
        with gr.Row():
            f["max_length"] = _whole(
                start_values(caps)["max_length"], "Max length", "max_length", minimum=8,
                maximum=caps.max_length,
            )  # fmt: skip
            f["max_examples"] = _whole(caps.max_examples, "Max examples", "max_examples", minimum=0)
        preview_btn = gr.Button("Preview the data", size="sm")
        preview = gr.HTML(elem_classes="qpa-preview")
    private = {"api_visibility": "private"}
    f["upload"].upload(dh.on_upload, f["upload"], [f["upload"], f["source"]], **private)
    f["source"].change(dh.on_source, f["source"], [f["topics"], f["upload"]], **private)
    previewed = {"model": model, **{k: f[k] for k in dh.DATA_FIELDS}}
    preview_btn.click(**named(partial(dh.on_preview, studio), previewed, preview),
                      api_name="preview_data")  # fmt: skip
    return f


def _wire_plan(f: dict) -> None:
    """The plan under Steps and Batch follows every field it depends on."""
    planned = named(h.on_plan, {k: f[k] for k in h.PLAN_FIELDS}, f["plan_text"])
    for name in h.PLAN_FIELDS:
        f[name].change(**planned, api_visibility="private", show_progress="hidden")


def build(studio: Studio, design: dict) -> dict:
    """Lay out the Train tab; `design` holds the Design tab's inputs (the run's shape)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320, elem_classes="qpa-controls"):
            gr.Markdown(
                "### Launch\nThe model and the QPA shape come from the **Design** tab. "
                + zerogpu.launch_note(studio)
            )
            f = _settings(studio.caps)
            f.update(_data(studio, design["model"]))
            with gr.Row():
                launch = gr.Button("Launch", variant="primary", elem_id="launch")
                cancel = gr.Button("Stop / cancel", variant="stop", elem_id="cancel")
            estimate = gr.Markdown(elem_id="estimate")
        with gr.Column(scale=8):
            with gr.Accordion(EXPLAIN_TITLE, open=False, elem_id="explain-train"):
                gr.HTML(TRAIN_EXPLAINER)
            watch = gr.Dropdown(
                [], value=[], multiselect=True, label="Watching", elem_id="watch",
                allow_custom_value=True,  # runs launched after this page was built
                info="Runs shown below; a new page picks the live ones.",
            )  # fmt: skip
            progress = gr.HTML(elem_id="progress")
            curves = gr.Plot(show_label=False, elem_id="curves")
            cli = gr.Code(
                "# launch a run to see the command it runs", label="Equivalent CLI",
                language="shell", interactive=False, lines=3, elem_id="cli",
            )  # fmt: skip
    _wire_plan(f)
    last = gr.State("")  # signature of what is drawn, so unchanged ticks redraw nothing
    form = {**{k: design[k] for k in h.DESIGN_FIELDS}, **{k: f[k] for k in h.TRAIN_FIELDS}}
    launch.click(
        **named(zerogpu.launch_handler(studio), form, {"watch": watch, "cli": cli, "last": last}),
        api_name="launch", concurrency_limit=1,
        show_progress="minimal",  # a spinner, not text over the cards
    )  # fmt: skip
    cancel.click(partial(h.on_cancel, studio), watch, last, api_name="cancel")
    estimating = {**named(partial(h.on_estimate, studio), form, estimate),
                  "trigger_mode": "always_last", "show_progress": "hidden",
                  "api_visibility": "private"}  # fmt: skip
    for k in ("plan", "steps", "batch_size", "eval_every", "source", "topics", "max_length"):
        f[k].change(**estimating)
    design["model"].change(**estimating)
    stop_id = gr.Textbox(visible="hidden", elem_id="stop-id")
    stop_one = gr.Button("Stop one run", visible="hidden", elem_id="stop-one")
    stop_one.click(
        partial(h.on_cancel, studio), stop_id, last, js="(x) => window.qpaStopRun || x",
        api_visibility="private",
    )  # fmt: skip
    refresh = {"fn": partial(h.on_refresh, studio), "inputs": [watch, last],
               "outputs": [progress, curves, last], "show_progress": "hidden",
               "api_visibility": "private"}  # fmt: skip
    gr.Timer(POLL_S).tick(**refresh)
    watch.change(**refresh)
    return {"watch": watch, "cli": cli, "fields": f, "on_load": partial(h.on_load, studio),
            "estimate": estimate, "on_estimate": estimating}  # fmt: skip
