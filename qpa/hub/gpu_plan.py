"""How a launch splits into ZeroGPU calls, and how many GPU seconds it should use.

ZeroGPU lends a GPU for one call at a time, each asking for a ``duration`` that the visitor's
remaining quota must cover before the call starts (quota is then charged for the seconds the
call really used). `plan_gpu` sizes the calls of one run: the steps that fit in `CALL_S` seconds
at the pace earlier runs on this Space measured (`qpa.training.estimate`), else at an assumed
`ASSUMED_STEP_S`; chunks end on validation steps where they can, so a chunked run evaluates
exactly when an uninterrupted one does. `describe_gpu_launch` is the line the Train tab shows
before Start.

>>> plan = GpuPlan(steps=60, step_s=0.5, measured=True, chunk_steps=40, first_s=30)
>>> plan.calls, plan.call_seconds(), plan.gpu_s
(2, [80, 35], 100)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qpa.config import RunConfig

CALL_S = 120  # the duration a call aims at: one free visitor's quota holds a few of them
PREPARE_S = 20  # each call loads the model, the data and the checkpoint again
FIRST_S = 30  # the first call of a run also downloads or converts the model and caches rows
MARGIN = 1.5  # a call ZeroGPU cuts short at its duration loses its chunk: ask for more
ASSUMED_STEP_S = 1.0  # a step's seconds (evaluations included) before any run here measured it
QUOTA_DOCS = "https://huggingface.co/docs/hub/spaces-zerogpu"


@dataclass(frozen=True)
class GpuPlan:
    """The GPU calls of one run."""

    steps: int  # the run's optimizer steps
    step_s: float  # seconds a step takes on the GPU, its share of the evaluations included
    measured: bool  # step_s comes from earlier runs here (else ASSUMED_STEP_S)
    chunk_steps: int  # steps per call
    first_s: int = 0  # extra seconds of the first call (model, rows)

    @property
    def calls(self) -> int:
        return math.ceil(self.steps / self.chunk_steps)

    def call_seconds(self) -> list[int]:
        """The duration each call asks for: its steps at the pace with a margin, plus loading."""
        out = []
        for call in range(self.calls):
            steps = min(self.chunk_steps, self.steps - call * self.chunk_steps)
            first = self.first_s if call == 0 else 0
            out.append(PREPARE_S + first + math.ceil(MARGIN * steps * self.step_s))
        return out

    @property
    def gpu_s(self) -> int:
        """GPU seconds the run should use (what the quota is charged; no margin)."""
        return math.ceil(self.steps * self.step_s + self.calls * PREPARE_S + self.first_s)


def plan_gpu(config: RunConfig, first: bool = True, call_s: int = CALL_S) -> GpuPlan:
    """The calls of `config`'s run: as many steps per call as fit in `call_s` seconds, ending on
    validation steps where at least one fits. With `first` False an earlier run of the same
    launch has loaded the model and cached the rows."""
    from qpa.training.estimate import estimate_run

    estimate = estimate_run(config, first=first)
    t = config.train
    measured = estimate["train_s"] is not None
    step_s = estimate["train_s"] / t.steps if measured else ASSUMED_STEP_S
    first_s = FIRST_S if first else 0
    fit = max(1, int((call_s - PREPARE_S - first_s) / (MARGIN * step_s)))
    chunk = fit - fit % t.eval_every if fit >= t.eval_every else fit
    return GpuPlan(t.steps, step_s, measured, min(chunk, t.steps), first_s)


def describe_gpu_launch(configs: list[RunConfig], plans: list[GpuPlan] | None = None) -> str:
    """The Train tab's line before Start on ZeroGPU: the launch's GPU seconds, its calls, and
    how the quota works."""
    plans = plans or [plan_gpu(c, first=i == 0) for i, c in enumerate(configs)]
    total = sum(p.gpu_s for p in plans)
    calls = sum(p.calls for p in plans)
    longest = max(s for p in plans for s in p.call_seconds())
    pace = (
        "at the pace earlier runs on this Space measured"
        if all(p.measured for p in plans)
        else f"assuming {ASSUMED_STEP_S:g} s a step until a run on this Space measures it"
    )
    return (
        f"ZeroGPU estimate: about **{total} GPU seconds** in {calls} GPU call(s) of at most "
        f"{longest} s each ({pace}). They count against your daily ZeroGPU quota; each call "
        f"starts only if your remaining quota covers its duration. Logged-in visitors get more "
        f"quota and PRO accounts the most ({QUOTA_DOCS}). A run stopped by the quota keeps "
        "its last checkpoint."
    )
