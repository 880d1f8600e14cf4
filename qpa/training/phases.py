"""What a run is doing before and beside its steps, named the same in status.json, the run card
and the CLI: converting the model (once), loading it, caching rows (n of N, with an ETA),
training.

`reporter(run, emit)` is the `progress` callback `qpa.training.session.prepare` calls; it writes
``phase``, ``message`` and ``rows`` ({split, done, total, eta_s, tokens_per_s}) into the run's status and emits
a ``prepare`` event. Training rows stream in during the first steps: the phase stays
``training`` and only ``rows`` moves.

>>> describe_phase("caching rows", {"split": "val", "done": 128, "total": 202, "eta_s": 9.6})
'caching validation rows: 128 of 202 examples, ETA 0:10'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PHASES = ("converting the model", "loading the model", "caching rows", "training")
SPLIT_NAMES = {"train": "training", "val": "validation"}


def clock(seconds: float) -> str:
    """m:ss (h:mm:ss from an hour)."""
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def describe_phase(phase: str, rows: dict[str, Any] | None = None) -> str:
    """One line naming `phase`; for caching, which rows, how many are done and the ETA."""
    if phase == "converting the model":
        return "converting the model (once, about 10 s)"
    if phase == "loading the model":
        return "loading the model and data"
    if phase != "caching rows" or not rows:
        return phase
    eta = rows.get("eta_s")
    return (
        f"caching {SPLIT_NAMES.get(rows['split'], rows['split'])} rows: {rows['done']:,} of "
        f"{rows['total']:,} examples" + (f", ETA {clock(eta)}" if eta is not None else "")
    )


def reporter(run, emit: Callable[[dict], None]) -> Callable[..., None]:
    """The `progress(phase, split=None, done=None, total=None, eta=None, rate=None)` callback of
    a run (`rate`: the backbone tokens per second measured while caching)."""
    last = {"phase": None}

    def report(
        phase: str,
        split: str | None = None,
        done: int | None = None,
        total: int | None = None,
        eta: float | None = None,
        rate: float | None = None,
    ) -> None:
        rows = None
        if split is not None:
            rows = {"split": split, "done": done, "total": total, "eta_s": eta, "tokens_per_s": rate}
        message = describe_phase(phase, rows)
        event = {"event": "prepare", "phase": phase, "message": message, "rows": rows}
        emit(event)
        if run is None:
            return
        if phase != last["phase"]:  # train.log: each phase once, when it starts
            last["phase"] = phase
            run.log(message)
        if split == "train":
            run.set_status(rows=rows)
        elif split == "val" and done == total:  # the step-0 point follows at once
            run.set_status(phase="training", message="training", rows=rows)
        else:
            run.set_status(phase=phase, message=message, rows=rows)

    return report
