"""Keep the best, not the last: the trainable state of the evaluation with the lowest
validation loss, its metrics, and how many evaluations have passed without a new best.

The loss that decides is the replies' (assistant tokens) on chat data and every token's on
plain text, the same perplexity the curves and the base-model comparison use. With a run, each
new best is saved in the run folder (``best.safetensors``, atomically, its metrics in the header
and in ``best.json``), so a resumed run still knows it; the loop exports it at the end.

>>> headline({"loss": 2.0, "perplexity": 7.4, "assistant_loss": 1.5, "assistant_perplexity": 4.5})
('replies', 4.5)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def selection_loss(metrics: dict[str, Any]) -> float:
    """The validation loss that picks the best step: the replies' where the data has them."""
    return metrics.get("assistant_loss", metrics["loss"])


def headline(metrics: dict[str, Any]) -> tuple[str, float]:
    """(what, perplexity) matching `selection_loss`: ("replies", …) or ("all tokens", …)."""
    if "assistant_perplexity" in metrics:
        return "replies", metrics["assistant_perplexity"]
    return "all tokens", metrics["perplexity"]


class BestKeeper:
    """The best evaluation so far: its step, metrics and trainable tensors (a copy)."""

    def __init__(self, run=None) -> None:
        self.run = run
        self.step: int | None = None
        self.metrics: dict[str, Any] | None = None
        self.tensors: dict[str, torch.Tensor] | None = None
        self.stale = 0  # evaluations since the best one

    @classmethod
    def resume(cls, run, stale: int, writes: bool = True) -> BestKeeper:
        """The keeper of a run being resumed (empty when it saved no best yet); with `writes`
        False (a process other than rank 0) it reads the run's best but saves none."""
        keeper = cls(run if writes else None)
        if run.has_best():
            keeper.tensors, meta = run.load_best()
            keeper.step, keeper.metrics, keeper.stale = meta["step"], meta["metrics"], stale
        return keeper

    def update(self, session, step: int, metrics: dict[str, Any]) -> bool:
        """Record evaluation `metrics` at `step`; True (and a saved copy) when it is a new best."""
        if self.metrics is not None and selection_loss(metrics) >= selection_loss(self.metrics):
            self.stale += 1
            return False
        self.step, self.metrics, self.stale = step, metrics, 0
        self.tensors = session.state_tensors()
        if self.run is not None:
            self.run.save_best(self.tensors, {"step": step, "metrics": metrics})
        return True

    def restore(self, session) -> None:
        """Put the best tensors back into `session` (before exporting them)."""
        if self.tensors is not None:
            session.load_state_tensors(self.tensors)


def kept_summary(session, keeper: BestKeeper, base: dict, last: dict, state: str,
                 step: int) -> dict:  # fmt: skip
    """What a run ends with: the metrics of the step it exports (the best, whose tensors are put
    back into `session` for the export, unless `keep` = last), the last step's, the base
    model's, and whether the exported step is worse than the base model."""
    kept, kept_step = last, step
    if session.config.train.keep == "best" and keeper.metrics is not None:
        kept, kept_step = keeper.metrics, keeper.step
        keeper.restore(session)
    _, ppl = headline(kept)
    return {
        "state": state,
        "step": step,
        "best_step": keeper.step,
        "exported_step": kept_step,
        **{f"val_{k}": v for k, v in kept.items()},
        **{f"last_val_{k}": last[k] for k in ("perplexity", "assistant_perplexity") if k in last},
        "base_perplexity": base["headline_perplexity"],
        "base_headline": base["headline"],
        "worse_than_base": ppl > base["headline_perplexity"],
    }
