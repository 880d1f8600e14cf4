"""ZeroGPU on Hugging Face Spaces: train a run in GPU-sized chunks, one ``@spaces.GPU`` call
each, checkpointing between calls with the run folder's resume mechanism.

A ZeroGPU Space lends a GPU to one decorated call at a time, for at most its ``duration``
seconds; `train_in_chunks` therefore trains `chunk_steps` steps per call (the duration computed
from them) and resumes from the saved state in the next call. Without the `spaces` package, or
off ZeroGPU hardware, `gpu` returns the function unchanged and the chunks run one after another
in this process: the result equals one uninterrupted run (tests/test_spaces.py).

>>> f = lambda: 1
>>> gpu(60)(f) is f  # not on ZeroGPU here
True
>>> call_seconds(chunk_steps=50, seconds_per_step=0.5)
55
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Sequence

from qpa.config import RunConfig
from qpa.runs.run import Run

PREPARE_S = 30  # loading the model and the data again at the start of every call


def on_zerogpu() -> bool:
    """Whether this process runs on ZeroGPU hardware with the `spaces` package installed."""
    zero = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true")
    return zero and importlib.util.find_spec("spaces") is not None


def gpu(duration: int) -> Callable[[Callable], Callable]:
    """``spaces.GPU(duration=duration)`` on ZeroGPU; elsewhere a decorator that does nothing."""
    if not on_zerogpu():
        return lambda fn: fn
    import spaces

    return spaces.GPU(duration=duration)


def call_seconds(chunk_steps: int, seconds_per_step: float, prepare_s: int = PREPARE_S) -> int:
    """The GPU duration one call asks for: its steps at the measured pace, plus preparation."""
    if chunk_steps < 1 or seconds_per_step <= 0:
        raise ValueError(
            f"`chunk_steps` = {chunk_steps} must be ≥ 1 and `seconds_per_step` = "
            f"{seconds_per_step} > 0."
        )
    return math.ceil(chunk_steps * seconds_per_step) + prepare_s


def train_in_chunks(
    config: RunConfig, run: Run, chunk_steps: int, seconds_per_step: float = 1.0,
    callbacks: Sequence[Callable[[dict], None]] = (),
) -> dict:  # fmt: skip
    """Train `run` (new or stopped) to the end in calls of at most `chunk_steps` steps; returns
    the last call's summary. A stop the user asked for ends it after the current chunk step."""
    from qpa.training.loop import train

    duration = call_seconds(chunk_steps, seconds_per_step)
    while True:
        start = int(run.load_state()[1]["step"]) if run.has_state() else 0
        end = ChunkEnd(run, start + chunk_steps)
        summary = gpu(duration)(train)(config, run, callbacks=[*callbacks, end], resume=start > 0)
        if summary["state"] != "cancelled" or not end.fired:  # done, failed, or stopped by the user
            return summary
        run.clear_stop()
        run.remove_temps()


class ChunkEnd:
    """A training callback that asks the loop to stop after step `target` (the loop then saves
    its state); `fired` tells that stop from one the user asked for."""

    def __init__(self, run: Run, target: int) -> None:
        self.run, self.target, self.fired = run, target, False

    def __call__(self, event: dict) -> None:
        if event.get("event") == "step" and event["step"] >= self.target:
            if not self.run.stop_requested():
                self.fired = True
                self.run.request_stop()
