"""Train tab on ZeroGPU hardware: a launch trains inside the Start request, in GPU-sized calls.

ZeroGPU lends a GPU only to a ``@spaces.GPU`` function called from a visitor's request, for the
duration that call asks for; a background process never gets one. So on ZeroGPU the Start
button's handler is `on_launch`, a generator: it checks and queues the launch as the ordinary
handler does (`app.handlers.train.launch`; the queue starts no process there), shows the runs,
then trains each in chunks of steps, one GPU call each (`qpa.hub.zerogpu.chunks`), resuming
from the run's checkpoint between calls, and tells the page after every call. The progress
cards follow the run folders as always. ZeroGPU's refusals ("You have exceeded your free
ZeroGPU quota (…)") reach the page in plain words, and the run stays stopped at its last
checkpoint. Elsewhere `launch_handler` is the ordinary background launch, unchanged.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gradio as gr

from app.handlers import train
from app.handlers.common import as_error
from app.state import Studio
from qpa import (
    Run,
    chunks,
    explain_zerogpu_error,
    gpu_chunk,
    open_run,
    plan_gpu,
    settle,
)

ERROR_SECONDS = 30  # a quota message stays long enough to read its wait time
CLOSED = "stopped: the page that started it was closed; it keeps its last checkpoint"


def launch_note(studio: Studio) -> str:
    """How Start trains here, for the Train tab's intro."""
    if studio.settings.zerogpu:
        return (
            "On this ZeroGPU Space, Start trains the runs in this page's request, one GPU call "
            "per chunk of steps, one run after the other: keep the page open until they finish. "
            "Each run writes its own folder and keeps a checkpoint between calls."
        )
    return (
        "Each run is a background process writing its own folder, so it survives a reload or a "
        f"restart. {studio.settings.max_runs} train at once; later launches wait in a queue."
    )


def launch_handler(studio: Studio):
    """The Start button's handler: in-request chunked training on ZeroGPU (registering the GPU
    function before the app launches, as ZeroGPU requires), else the background launch."""
    if not studio.settings.zerogpu:
        return partial(train.on_launch, studio)
    gpu_chunk()
    return partial(on_launch, studio)


def on_launch(studio: Studio, form: dict[str, Any]):
    """Start on ZeroGPU (`FORM_FIELDS`): queue the launch, show it, then train its runs one
    after the other, one GPU call per chunk, yielding ``watch``, ``cli`` and ``last``."""
    try:
        ids = train.launch_warned(studio, form)
    except Exception as e:
        raise as_error(e) from None
    yield train.launched_view(studio, ids)
    gpu, pending = gpu_chunk(), list(ids)
    try:
        for i, run_id in enumerate(ids):
            pending.remove(run_id)
            yield from train_run(open_run(run_id, studio.root), first=i == 0, gpu=gpu)
    finally:  # a failure or a closed page: the launch's runs not started never start
        for run_id in pending:
            open_run(run_id, studio.root).cancel()


def train_run(run: Run, first: bool, gpu):
    """Train one queued run to the end in GPU calls, yielding after each; a run cancelled
    before its turn is skipped. Errors leave the run stopped, saying why, and reach the page
    in plain words."""
    if not run.claim(token="zerogpu"):  # cancelled while it waited
        return
    run.lock()
    try:
        plan = plan_gpu(run.config, first=first)
        gr.Info(f"{run.id}: training in {plan.calls} GPU call(s), about {plan.gpu_s} GPU s.")
        for event in chunks(run.config, run, plan.chunk_steps, plan.call_seconds(), gpu):
            gr.Info(f"{run.id}: GPU call {event['call']} of {plan.calls} done, step "
                    f"{event['step']}/{run.config.train.steps}.")  # fmt: skip
            yield {"last": ""}  # the cards redraw at the next tick
    except GeneratorExit:
        settle(run, CLOSED)
        raise
    except Exception as e:
        plain = plain_error(run, e)
        settle(run, plain)
        raise gr.Error(plain, duration=ERROR_SECONDS, title="Training stopped") from None
    finally:
        run.unlock()


def plain_error(run: Run, error: Exception) -> str:
    """What went wrong, for the page: ZeroGPU's refusals in plain words (a failure inside the
    GPU call with the run's own recorded error), anything else as the ordinary handlers say it."""
    if isinstance(error, gr.Error):
        plain = explain_zerogpu_error(str(error.message), str(error.title or ""))
        if plain is not None and error.title == "ZeroGPU worker error":
            recorded = run.status().get("error")
            plain = f"{plain} {recorded}" if recorded else plain
        return f"{run.id}: {plain or error.message}"
    return f"{run.id}: {as_error(error).message}"
