"""Runs tab: every run as a table, several runs' curves overlaid, one run's config and log,
its adapter as a zip, and pushing it to the Hub."""

from __future__ import annotations

from functools import partial

import gradio as gr

from app.handlers import runs as h
from app.state import Studio
from app.tabs import hub


def build(studio: Studio) -> gr.Button:
    """Lay out the Runs tab; returns its refresh button (the tab's select event clicks it)."""
    rows = h.table_rows(studio)
    ids = [r[0] for r in rows]
    hub.temporary_notice(studio)
    with gr.Row():
        gr.Markdown(f"### All runs\nEvery folder under `{studio.root}`; click a row to open it.")
        refresh = gr.Button("Refresh", size="sm", scale=0, min_width=120, elem_id="runs-refresh")
    table = gr.Dataframe(
        rows,
        headers=h.HEADERS,
        interactive=False,
        wrap=True,
        elem_id="runs-table",
        show_label=False,
        max_height=320,
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=7):
            chosen = gr.Dropdown(
                ids,
                value=h.latest_launch(studio, pair=True),
                multiselect=True,
                allow_custom_value=True,  # an API caller may name a run newer than the page
                label="Overlay curves of",
                info="QPA runs are solid lines, LoRA baselines dashed.",
            )
            overlay = gr.Plot(show_label=False, elem_id="overlay")
        with gr.Column(scale=5):
            run = gr.Dropdown(
                ids, value=None, label="Open run", elem_id="open-run", allow_custom_value=True
            )
            download = gr.DownloadButton("Download adapter (.zip)", interactive=False, size="sm")
            with gr.Tabs():
                with gr.Tab("config.json"):
                    config = gr.Code(
                        language="json", interactive=False, lines=14, max_lines=24, show_label=False
                    )
                with gr.Tab("train.log"):
                    log = gr.Code(
                        language=None, interactive=False, lines=14, max_lines=24, show_label=False
                    )
            hub.build(studio, run)
    refresh.click(
        partial(h.on_refresh, studio), chosen, [table, chosen, run, overlay], api_name="runs"
    )
    chosen.input(partial(h.on_overlay, studio), chosen, overlay, api_visibility="private")
    run.change(partial(h.on_open, studio), run, [config, log, download], api_name="open_run")

    def open_row(rows, evt: gr.SelectData):  # gradio spots SelectData by a plain function's hint
        return h.on_table_select(studio, rows, evt)

    table.select(open_row, table, run, api_visibility="private")
    return refresh
