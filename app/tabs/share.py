"""Share and teach: the page URL always holds the Design and Train forms, the open tab and the
lesson (locked or hidden controls, a pinned QPA variant), so a reload keeps them and a link
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
from app.wiring import as_outputs, named
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
    variant: gr.Dropdown,
    views: dict,
) -> None:
    """The share panel and tour; wires the URL to `fields` (name → component), the tabs and
    the Design views (`views`: the Design handlers' outputs by name)."""
    specs = {name: spec_of(name, fields[name]) for name in LINKED}
    panel = _panel(specs)
    lesson = {"tab": gr.State("design"), "lock": panel["lock"], "hide": panel["hide"],
              "pinned": gr.State(""), "variant": variant}  # fmt: skip
    page = {**{n: fields[n] for n in LINKED}, **lesson}
    as_query = _wire_url(specs, page, panel, tab_items)
    stored = gr.BrowserState({"query": ""}, storage_key="qpa-studio-defaults")
    # {"query": ...}: gradio writes no falsy value to the browser, so "" could not forget
    panel["save"].click(
        **named(lambda values: {"query": as_query(values, lesson=False)}, page, stored), **QUIET
    ).then(
        lambda: gr.Info("Kept: a page opened without a link starts from these settings."), **QUIET
    )
    panel["forget"].click(lambda: {"query": ""}, None, stored, **QUIET)
    shaped = gr.State(False)
    opened = {**{n: fields[n] for n in LINKED}, "tabs": tabs, **lesson, "shaped": shaped}

    def on_open(saved: dict | None, request: gr.Request):
        params = dict(request.query_params) if request else {}
        kept = saved.get("query", "") if isinstance(saved, dict) else ""
        return as_outputs(open_link(params or dict(parse_qsl(kept)), specs, fields), opened)

    def redraw(values: dict) -> dict:  # a plain page keeps its first drawing (no race with edits)
        values = dict(values)
        return dh.on_change(studio, values) if values.pop("shaped") else {}

    design = {k: fields[k] for k in shape.FIELDS}
    demo.load(on_open, stored, list(opened.values()), **QUIET).then(
        **named(redraw, {"shaped": shaped, **design}, views), **QUIET
    ).then(**named(partial(dh.on_refused, studio), design, views), **QUIET).then(
        **named(shape.matching_variant, design, variant), **QUIET
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
                    [links.VARIANT_KEY, *specs],
                    label="Lock these controls (preset: pin the current one)",
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


def _wire_url(specs: dict, page: dict, panel: dict, tab_items: dict):
    """Keep the page URL equal to the form and lesson (`page`: the linked fields, then the
    tab, locks, hidden tabs, pinned variant and variant box, by name); returns the query
    builder."""

    def as_query(values: dict, lesson: bool = True) -> str:
        pinned, locked, variant = values["pinned"], values["lock"], values["variant"]
        if links.VARIANT_KEY in (locked or ()) and variant != shape.CUSTOM:
            pinned = pinned or variant
        lesson_kw = {"tab": values["tab"], "lock": locked, "hide": values["hide"],
                     "variant": pinned}  # fmt: skip
        form = {name: values[name] for name in LINKED}
        return links.query(form, specs, **(lesson_kw if lesson else {}))

    current = gr.Textbox(visible="hidden", elem_id="link-query")
    writing = named(as_query, page, current)
    changes = [page[name].change for name in (*LINKED, "lock", "hide")]
    gr.on(changes, **writing, trigger_mode="always_last", **QUIET)
    current.change(None, current, None, js=WRITE_URL, **QUIET)
    panel["hide"].change(None, panel["hide"], None, js=HIDE_TABS, **QUIET)
    for tab_id, item in tab_items.items():
        item.select(lambda t=tab_id: t, None, page["tab"], **QUIET).then(**writing, **QUIET)
    link = panel["link"]
    panel["copy"].click(**named(as_query, page, link), **QUIET).then(
        None, link, link, js=COPY, **QUIET
    )
    return as_query


def open_link(params: dict, specs: dict, fields: dict) -> dict:
    """The page updates for a link, by name: each linked field's value, lock and visibility;
    the open tab (``tabs`` to select it, ``tab`` to remember it); the lesson's ``lock``,
    ``hide`` and ``pinned`` variant; the ``variant`` box; and whether the Design views need a
    redraw (``shaped``)."""
    link = links.parse(params, specs, shape.QPA_VARIANTS)
    if link.notices:
        gr.Warning(links.notice(link.notices))
    if link.lock:
        gr.Info(f"A lesson link: {', '.join(link.lock)} stay as set for this lesson.")
    values = dict(link.values)
    if link.variant:
        values = {**shape.variant_values(link.variant), **values}
    if "chunk_size" in values and "n_qubits" not in values:
        values["n_qubits"] = 1  # the fewest that fit: the redraw raises it to what is needed
    updates = {
        name: gr.update(
            **({"value": values[name]} if name in values else {}),
            **({"interactive": False} if name in link.lock else {}),
            **({"visible": False} if name in link.hide else {}),
        )
        for name in LINKED
    }
    pinned = bool(link.variant or links.VARIANT_KEY in link.lock)
    return {**updates, "tabs": gr.update(selected=link.tab) if link.tab else gr.update(),
            "tab": link.tab or "design", "lock": list(link.lock), "hide": list(link.hide),
            "pinned": link.variant, "variant": gr.update(interactive=not pinned),
            "shaped": bool(values)}  # fmt: skip
