"""Compose the studio: a header, then the Design, Train, Runs, Results and Chat tabs.

`build_app` returns the Blocks and starts the run queue's poller; `launch_kwargs` the theme,
CSS, address (127.0.0.1 unless ``QPA_HOST`` or Spaces say otherwise) and upload cap to launch it
with (gradio 6 takes theme and CSS in ``launch``). The server shows no tracebacks: every error
a caller can cause reaches the page and API clients as a `gr.Error` message (the handlers'
`guarded`, and `StudioBlocks` for values gradio itself cannot read).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from app import glossary
from app.state import Studio
from app.tabs import chat, design, results, runs, share, train
from qpa import MAX_UPLOAD_BYTES

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ZEROGPU_QUEUE = 64  # events that may wait in gradio's queue on ZeroGPU (gradio's default: 1)
PAPER = "https://arxiv.org/abs/2410.09846"
INTRO = (
    "Quantum Parameter Adaptation trains a small simulated quantum circuit and an MLP that "
    "<i>generate</i> a language model's LoRA weights, so far fewer parameters are trained than "
    "LoRA's own. Shape the circuit and watch the counts move, train QPA against its matched LoRA "
    "baseline, then chat with both."
)


def header(studio: Studio) -> str:
    demo = '<span class="qpa-demo">demo mode: small runs</span>' if studio.settings.demo else ""
    return (
        f'<div class="qpa-header"><div><h1><span>QPA</span> Studio{demo}</h1><p>{INTRO}</p></div>'
        f'<div class="qpa-links"><a href="{PAPER}" target="_blank">Paper (arXiv 2410.09846)</a>'
        "</div></div>"
    )


class StudioBlocks(gr.Blocks):
    """`gr.Blocks` whose input errors reach the caller: a value gradio cannot read for a
    component (``"abc"`` for a number, too few values) becomes a `gr.Error` with gradio's own
    message, instead of an error without one (``show_error`` stays off for everything else)."""

    async def preprocess_data(self, *args, **kwargs):
        try:
            return await super().preprocess_data(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            raise gr.Error(str(e), duration=10, print_exception=False) from None


def private_file_cache() -> None:
    """Point gradio's file cache (where it copies every file it serves, adapter zips included,
    readable by all in a shared /tmp/gradio) at a private 0700 folder, unless the operator
    chose one with ``GRADIO_TEMP_DIR``. Call before building Blocks."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="qpa-gradio-")


def build_app(studio: Studio | None = None) -> gr.Blocks:
    """The whole studio as a gradio Blocks (not launched); its queue starts runs from now on."""
    studio = studio or Studio.create()
    private_file_cache()
    studio.jobs.start_poller()
    if studio.mirror is not None:  # restore an empty runs folder, then copy finished runs
        studio.mirror.start()
    with StudioBlocks(title="QPA Studio", fill_width=True) as demo:
        gr.HTML(header(studio))
        share_row = gr.Column()
        with gr.Tabs() as tabs:
            with gr.Tab("① Design", id="design") as design_tab:
                shape, views = design.build(studio)
            with gr.Tab("② Train", id="train") as train_tab:
                watch = train.build(studio, shape)
            with gr.Tab("③ Runs", id="runs") as runs_tab:
                explain("runs", glossary.RUNS_EXPLAINER)
                runs_refresh = runs.build(studio)
            with gr.Tab("④ Results", id="results") as results_tab:
                explain("results", glossary.RESULTS_EXPLAINER)
                results_refresh = results.build(studio)
            with gr.Tab("⑤ Chat", id="chat") as chat_tab:
                explain("chat", glossary.CHAT_EXPLAINER)
                chat_refresh = chat.build(studio)
        items = dict(zip(share.links.TABS, (design_tab, train_tab, runs_tab, results_tab, chat_tab),
                         strict=True))  # fmt: skip
        with share_row:
            share.build(studio, demo, {**shape, **watch["fields"]}, tabs, items, shape["variant"], views)
        demo.load(
            watch["on_load"], None, [watch["watch"], watch["cli"]], api_visibility="private",
            show_progress="hidden",
        )
        demo.load(**watch["on_estimate"])  # the launch's time before Start
        runs_tab.select(None, js=_click(runs_refresh))
        results_tab.select(None, js=_click(results_refresh))
        chat_tab.select(None, js=_click(chat_refresh))
    if studio.settings.zerogpu:  # gradio lets 1 event wait there; a page load sends several
        demo.queue(max_size=ZEROGPU_QUEUE)
    return demo


def explain(tab_id: str, text: str) -> None:
    """A tab's folded "what am I looking at" panel."""
    with gr.Accordion(glossary.EXPLAIN_TITLE, open=False, elem_id=f"explain-{tab_id}"):
        gr.HTML(text)


def _click(button: gr.Button) -> str:
    """Front-end JS that presses `button`: a tab refreshes itself when opened."""
    return f"() => document.getElementById('{button.elem_id}')?.click()"


def theme() -> gr.themes.Base:
    """Soft, violet, with fonts gradio ships (no font CDN: the studio works offline)."""
    return gr.themes.Soft(
        primary_hue="violet",
        secondary_hue="orange",
        neutral_hue="slate",
        font=[
            gr.themes.LocalFont("IBM Plex Sans", weights=(400, 600, 700)),
            "ui-sans-serif",
            "system-ui",
            "sans-serif",
        ],
        font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"],
    )


def launch_kwargs(studio: Studio | None = None) -> dict[str, Any]:
    """Arguments for ``demo.launch``: address, theme, CSS, no tracebacks, upload size cap."""
    studio = studio or Studio.create()
    return {
        "server_name": studio.settings.host,
        "theme": theme(),
        "css_paths": [ASSETS / "studio.css"],
        "show_error": False,
        "js": train.STOP_ONE_JS,
        "max_file_size": MAX_UPLOAD_BYTES,
    }
