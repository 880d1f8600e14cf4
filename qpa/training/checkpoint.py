"""Checkpoints and stopping: what a run saves to be resumed exactly, and how a stop request
(the run folder's ``STOP``, SIGTERM or SIGINT) ends training after the current step.

A checkpoint is the session's trainable and start tensors (`Session.state_tensors`) plus the
optimizer's state, flattened to ``optim.<param>.<field>`` tensors, with the step and the
best-keeper's count of stale evaluations as metadata (`qpa.runs.run.Run.save_state`).
"""

from __future__ import annotations

import signal
import threading

import torch


def training_state(session, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The session's tensors and the optimizer's state, as CPU tensors by name."""
    tensors = session.state_tensors()
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu()
    return tensors


def restore_state(session, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Put `training_state`'s tensors back into the session and the optimizer."""
    session.load_state_tensors(tensors)
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, field = key.split(".", 2)
            state["state"].setdefault(int(idx), {})[field] = (
                value.to(session.device) if field != "step" else value
            )
    optimizer.load_state_dict(state)


def save_checkpoint(session, optimizer, run, step: int, stale: int) -> None:
    """Save the training state at `step` into `run` (nothing without a run)."""
    if run is not None:
        meta = {"step": step, "method": session.config.adapter.method, "stale": stale}
        run.save_state(training_state(session, optimizer), meta)


class Stopper:
    """Turns SIGTERM/SIGINT into a stop request while training (main thread only); `stop` also
    reads the run folder's stop request."""

    def __init__(self, run):
        self.run, self.flag, self.saved = run, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, *_):
        self.flag = True

    def __exit__(self, *_):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)

    @property
    def stop(self) -> bool:
        return self.flag or (self.run is not None and self.run.stop_requested())
