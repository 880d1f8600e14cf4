"""ZeroGPU on Hugging Face Spaces: train a run in GPU-sized chunks, one ``@spaces.GPU`` call
each, checkpointing between calls with the run folder's resume mechanism.

A ZeroGPU Space lends a GPU to one decorated call at a time, for at most the ``duration`` that
call asks for, and only inside a visitor's request. `chunks` therefore trains a run a chunk of
steps per call (`run_chunk`, whose duration `qpa.hub.gpu_plan.plan_gpu` computes from the plan)
and resumes from the saved state in the next call, yielding between calls so that the request
can report progress. ZeroGPU runs each call in a forked worker process, with its arguments and
its result pickled: `run_chunk` takes plain values, reads and writes the run folder, and returns
everything the caller needs. Without the `spaces` package, or off ZeroGPU hardware, `gpu_chunk`
is `run_chunk` itself and the chunks run one after another in this process: the result equals
one uninterrupted run (tests/test_zerogpu.py).

>>> on_zerogpu({"SPACES_ZERO_GPU": "false"}), gpu_chunk() is run_chunk  # not on ZeroGPU here
(False, True)
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from qpa.config import RunConfig
from qpa.runs.run import Run


def on_zerogpu(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs on ZeroGPU hardware (``SPACES_ZERO_GPU``, which the Space sets,
    as the `spaces` package reads it) with the `spaces` package installed."""
    env = os.environ if env is None else env
    zero = env.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")
    return zero and ("spaces" in sys.modules or importlib.util.find_spec("spaces") is not None)


def call_duration(config: RunConfig, run_path: str, stop_after: int, seconds: int) -> int:
    """The duration a `run_chunk` call asks ZeroGPU for: its own `seconds` argument (ZeroGPU
    calls this with the call's arguments before it schedules the GPU)."""
    return seconds


def gpu_chunk() -> Callable[..., dict]:
    """`run_chunk` as ZeroGPU's GPU function, ``spaces.GPU(duration=call_duration)``; elsewhere
    `run_chunk` itself. The app calls it once before it launches, since ZeroGPU looks for its
    GPU functions at startup; `spaces` returns the same function for every later call."""
    if not on_zerogpu():
        return run_chunk
    import spaces

    import qpa.training.threads  # noqa: F401 - its fork guard, registered before ZeroGPU forks

    return spaces.GPU(duration=call_duration)(run_chunk)


def run_chunk(config: RunConfig, run_path: str, stop_after: int, seconds: int) -> dict:
    """Train the run at `run_path` from its checkpoint (or from step 0) up to step `stop_after`
    (then the loop evaluates, checkpoints and exports, and the run reads as stopped); `seconds`
    is the duration the call asked for. Returns the training summary."""
    from qpa.training.loop import train

    run = Run(run_path)
    return train(config, run, resume=run.has_state(), stop_after=stop_after)


def chunks(
    config: RunConfig, run: Run, chunk_steps: int, seconds: int | list[int],
    gpu: Callable[..., dict] | None = None,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Train `run` (new, or stopped with a checkpoint) to the end, `chunk_steps` steps per call
    of `gpu` (default `gpu_chunk()`), each asking for `seconds` (one number, or one per call);
    yields after each call ``{"call", "step", "summary"}``. Between calls the run reads as
    running (this process holds it). A stop the user asks for ends it after the current call,
    and one asked for before a call makes none."""
    gpu = gpu or gpu_chunk()
    total = config.train.steps
    for call in range(1, total + 1):
        if run.stop_requested():
            when = "before it started" if call == 1 else "between GPU calls"
            run.set_status("cancelled", pid=None, message=f"cancelled {when}")
            return
        stop_after = min(saved_step(run) + chunk_steps, total)
        asked = seconds[min(call, len(seconds)) - 1] if isinstance(seconds, list) else seconds
        summary = gpu(config, str(run.path), stop_after, int(asked))
        more = summary["state"] == "cancelled" and summary["step"] == stop_after < total
        more = more and not run.stop_requested()
        if more:
            run.remove_temps()
            run.set_status("running", pid=os.getpid(), message="waiting for the next GPU call")
        yield {"call": call, "step": summary["step"], "summary": summary}
        if not more:
            return


def saved_step(run: Run) -> int:
    """The step of the run's checkpoint, 0 without one."""
    return int(run.load_state()[1]["step"]) if run.has_state() else 0


def settle(run: Run, reason: str) -> None:
    """Leave a run that a GPU call could not finish stopped, saying why: resumable from its
    checkpoint (``python -m qpa train --resume``) when it has one, else failed."""
    status = run.status()
    interrupted = str(status.get("error") or "").startswith("interrupted")  # a GPU call's end
    if status.get("state") not in ("queued", "running") and not interrupted:
        return
    ended = "cancelled" if run.has_state() else "failed"
    run.set_status(ended, pid=None, error=reason, message=reason)
    run.log(f"{ended}: {reason}")
