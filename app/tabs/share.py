"""Share and teach: the page URL always holds the Design and Train forms, the open tab and the
lesson (locked or hidden controls, a pinned preset), so a reload keeps them and a link
reproduces them; a teacher picks what students may not change and copies the link; anyone may
keep their own defaults in the browser. The tour and glossary open from here too."""

from __future__ import annotations

from functools import partial
from urllib.parse import parse_qsl

import gradio as gr

from app.glossary import tour_html
from app.handlers import design as dh
from app.handlers import links, shape
from app.handlers.train import TRAIN_FIELDS
from app.state import Studio
from qpa import DataConfig, TrainConfig, field_help

RANGES = {**shape.HELP, **field_help(TrainConfig), **field_help(DataConfig)}
LINKED = tuple(shape.FIELDS) + tuple(k for k in TRAIN_FIELDS if k != "upload")  # no file in a URL
TAB_LABELS = dict(zip(links.TABS, ("Design", "Train", "Runs", "Results", "Chat"), strict=True))
QUIET = {"api_visibility": "private", "show_progress": "hidden"}
WRITE_URL = "(q) => { history.replaceState(null, '', location.pathname + (q ? '?' + q : '')); }"
# gradio 6 ignores visibility updates of a Tab, so the tab buttons are hidden in the page.
HIDE_TABS = (
    "(ids) => { document.querySelectorAll('[role=tab][data-tab-id]').forEach((b) => {"
    " b.style.display = ids.includes(b.dataset.tabId) ? 'none' : ''; }); }"
)
COPY = (
    "(q) => { const url = location.origin + location.pathname + (q ? '?' + q : '');"
    " navigator.clipboard?.writeText(url).catch(() => {}); return url; }"
)


def spec_of(name: str, comp: gr.components.Component) -> links.Spec:
    """How a field reads from a link: its kind from the component, its range from the configs."""
    meta = RANGES.get(name, {})
    bounds = {"lo": meta.get("min"), "hi": meta.get("max")}
    values = tuple(
        c[1] if isinstance(c, tuple) else c for c in getattr(comp, "choices", None) or ()
    )
    if isinstance(comp, gr.Checkbox):
        return links.Spec("bool", comp.value)
    if isinstance(comp, (gr.Number, gr.Slider)):
        kind = "int" if isinstance(comp, gr.Number) and comp.precision == 0 else "float"
        kind = "int" if isinstance(comp, gr.Slider) and float(comp.step).is_integer() else kind
        return links.Spec(kind, comp.value, **bounds)
    if getattr(comp, "multiselect", False):
        return links.Spec("list", comp.value, choices=() if comp.allow_custom_value else values)
    if values and not getattr(comp, "allow_custom_value", False):
        return links.Spec("choice", comp.value, choices=values)
    return links.Spec("text", comp.value)


def build(
    studio: Studio,
    demo: gr.Blocks,
    fields: dict,
    tabs: gr.Tabs,
    tab_items: dict,
    preset: gr.Dropdown,
    views: list,
) -> None:
    """The share panel and tour; wires the URL to `fields` (name → component), the tabs and
    the Design views (`views`: the Design handlers' outputs)."""
    specs = {name: spec_of(name, fields[name]) for name in LINKED}
    panel = _panel(specs)
    state = [*(fields[n] for n in LINKED), gr.State("design"), panel["lock"], panel["hide"],
             gr.State(""), preset]  # fmt: skip
    as_query = _wire_url(specs, state, panel, tab_items)
    stored = gr.BrowserState({"query": ""}, storage_key="qpa-studio-defaults")
    # {"query": ...}: gradio writes no falsy value to the browser, so "" could not forget
    panel["save"].click(
        lambda *v: {"query": as_query(*v, lesson=False)}, state, stored, **QUIET
    ).then(
        lambda: gr.Info("Kept: a page opened without a link starts from these settings."), **QUIET
    )
    panel["forget"].click(lambda: {"query": ""}, None, stored, **QUIET)

    def on_open(saved: dict | None, request: gr.Request):
        params = dict(request.query_params) if request else {}
        kept = saved.get("query", "") if isinstance(saved, dict) else ""
        return open_link(params or dict(parse_qsl(kept)), specs, fields)

    def redraw(shaped: bool, *values):  # a plain page keeps its first drawing (no race with edits)
        return dh.on_change(studio, *values) if shaped else tuple(gr.skip() for _ in views)

    shaped = gr.State(False)
    design = [fields[k] for k in shape.FIELDS]
    outputs = [*state[: len(LINKED)], tabs, *state[len(LINKED) :], shaped]
    demo.load(on_open, stored, outputs, **QUIET).then(
        redraw, [shaped, *design], views, **QUIET
    ).then(partial(dh.on_refused, studio), design, views, **QUIET).then(
        shape.matching_preset, design, preset, **QUIET
    )


def _panel(specs: dict) -> dict:
    """The tour button and the folded share panel (what to lock or hide, copy, keep, forget),
    then the tour itself, hidden until asked for."""
    p = {}
    with gr.Row(elem_id="share-row"):
        tour_open = gr.Button("Tour and glossary", size="sm", elem_id="tour-open", scale=0)
        with gr.Accordion("Share this page, or make a lesson link", open=False, elem_id="share"):
            with gr.Row():
                p["lock"] = gr.CheckboxGroup(
                    ["preset", *specs], label="Lock these controls (preset: pin the current one)",
                    elem_id="lock",
                )  # fmt: skip
                p["hide"] = gr.CheckboxGroup(
                    [(v, k) for k, v in TAB_LABELS.items()],
                    label="Hide these tabs (hidden here at once)", elem_id="hide",
                )  # fmt: skip
            with gr.Row():
                p["copy"] = gr.Button(
                    "Copy link", variant="primary", size="sm", elem_id="copy-link"
                )
                p["save"] = gr.Button("Keep as my defaults", size="sm", elem_id="save-defaults")
                p["forget"] = gr.Button("Forget my defaults", size="sm")
            p["link"] = gr.Textbox(label="Link", interactive=False, elem_id="share-link")
    with gr.Column(visible=False, elem_id="tour") as tour:
        gr.HTML(tour_html())
        tour_close = gr.Button("Close the tour", size="sm", elem_id="tour-close")
    tour_open.click(lambda: gr.update(visible=True), None, tour, **QUIET, queue=False)
    tour_close.click(lambda: gr.update(visible=False), None, tour, **QUIET, queue=False)
    return p


def _wire_url(specs: dict, state: list, panel: dict, tab_items: dict):
    """Keep the page URL equal to the form and lesson (`state`: the linked fields, then the
    tab, locks, hidden tabs, pinned preset and preset box); returns the query builder."""

    def as_query(*values, lesson: bool = True) -> str:
        *values, tab_id, locked, hidden, pinned, preset = values
        if "preset" in (locked or ()) and preset != shape.CUSTOM:
            pinned = pinned or preset
        lesson_kw = {"tab": tab_id, "lock": locked, "hide": hidden, "preset": pinned}
        values = dict(zip(LINKED, values, strict=True))
        return links.query(values, specs, **(lesson_kw if lesson else {}))

    current = gr.Textbox(visible="hidden", elem_id="link-query")
    form, tab = state[: len(LINKED)], state[len(LINKED)]
    changes = [c.change for c in (*form, panel["lock"], panel["hide"])]
    gr.on(changes, as_query, state, current, trigger_mode="always_last", **QUIET)
    current.change(None, current, None, js=WRITE_URL, **QUIET)
    panel["hide"].change(None, panel["hide"], None, js=HIDE_TABS, **QUIET)
    for tab_id, item in tab_items.items():
        item.select(lambda t=tab_id: t, None, tab, **QUIET).then(as_query, state, current, **QUIET)
    link = panel["link"]
    panel["copy"].click(as_query, state, link, **QUIET).then(None, link, link, js=COPY, **QUIET)
    return as_query


def open_link(params: dict, specs: dict, fields: dict) -> list:
    """The page updates for a link: values, locks, the open tab, the lesson, and whether the
    Design views need a redraw."""
    link = links.parse(params, specs, shape.QPA_PRESETS)
    if link.notices:
        gr.Warning(links.notice(link.notices))
    if link.lock:
        gr.Info(f"A lesson link: {', '.join(link.lock)} stay as set for this lesson.")
    values = dict(link.values)
    if link.preset:
        values = {**shape.preset_values(link.preset), **values}
    if "chunk_size" in values and "n_qubits" not in values:
        values["n_qubits"] = 1  # the fewest that fit: the redraw raises it to what is needed
    updates = [
        gr.update(
            **({"value": values[name]} if name in values else {}),
            **({"interactive": False} if name in link.lock else {}),
            **({"visible": False} if name in link.hide else {}),
        )
        for name in LINKED
    ]
    preset = gr.update(interactive=not (link.preset or "preset" in link.lock))
    selected = gr.update(selected=link.tab) if link.tab else gr.update()
    return [*updates, selected, link.tab or "design", list(link.lock), list(link.hide),
            link.preset, preset, bool(values)]  # fmt: skip
