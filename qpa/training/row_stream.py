"""The streamed backbone-row cache: rows computed when a batch first needs them, kept on disk.

A `RowStream` owns the hidden rows of one split (`qpa.training.rows.Rows`, its `hidden`
allocated up front and filled example by example). `ensure(examples)` makes the rows of those
examples ready: it loads what another run already stored, and computes the rest together with
the next missing examples of `order` (the order training will want them), `GROUP_TOKENS` tokens
at a time, reusing the shared chat-template prefix (`qpa.training.rows.run_prefix`).

On disk, beside today's single file ``rows-<key>.safetensors`` (a finished cache, loaded whole):

- ``rows-<key>.parts/part-*.safetensors``: one computed group each (its example indices and their
  rows), written to a temporary name and renamed, so a killed run leaves only whole parts, which
  the next run loads and continues from;
- ``rows-<key>.lock``: ``flock``-ed while a process loads or computes, so two runs on the same data
  never compute the same row: the second waits, then loads the first one's part.

When every example is ready the parts are merged into the single file and removed.

>>> from qpa.models.loading import load_model
>>> from qpa.config import DataConfig
>>> from qpa.data.splits import build_splits
>>> model, tok = load_model("tiny-llama")
>>> val = build_splits(DataConfig(topics=("ai",), max_length=48, max_examples=24), tok).val
>>> stream = RowStream(model, val, "masked")
>>> stream.ensure(torch.tensor([0])); stream.n_ready, stream.n_examples
(2, 2)
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from qpa.training.rows import Rows, example_rows, row_widths, run_prefix, token_rows
from qpa.training.threads import forward_threads, thread_count

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; parts are still written atomically
    fcntl = None

log = logging.getLogger(__name__)

GROUP_TOKENS = 4096  # tokens computed per group: the first group costs seconds, not minutes
# (examples ready, examples, ETA seconds, measured backbone tokens per second)
Progress = Callable[[int, int, float | None, float | None], None]


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The seeded shuffle of `n` examples that training visits in `epoch`.

    >>> epoch_order(5, 0, 0).sort().values.tolist()
    [0, 1, 2, 3, 4]
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def cached_examples(path: Path, n: int) -> torch.Tensor:
    """(n,) bool: which of `n` examples have rows stored at `path` (finished, or in parts)."""
    from safetensors import safe_open

    done = torch.zeros(n, dtype=torch.bool)
    if path.is_file():
        done[:] = True
    for part in path.with_suffix(".parts").glob("part-*.safetensors"):
        with contextlib.suppress(OSError), safe_open(part, framework="pt") as f:
            done[f.get_tensor("examples")] = True
    return done


class RowStream:
    """Hidden rows of one split, made ready on demand and persisted as they are computed."""

    def __init__(
        self,
        model: nn.Module,
        encoded,
        perplexity: str,
        path: Path | None = None,
        order: torch.Tensor | None = None,
        progress: Progress | None = None,
        store: bool = True,
    ) -> None:
        self.model, self.encoded, self.perplexity, self.path = model, encoded, perplexity, path
        self.store = store  # False: read what is on disk, keep computed rows in memory only
        self.rows: Rows = token_rows(encoded, perplexity)
        width = model.get_output_embeddings().weight.shape[1]
        self.rows.hidden = torch.zeros(len(self.rows.targets), width)  # (R, d), filled on demand
        self.ready = torch.zeros(self.n_examples, dtype=torch.bool)  # (n,)
        self.order = torch.arange(self.n_examples) if order is None else order
        self.progress = progress
        self.loaded: set[str] = set()
        self.widths = row_widths(encoded, perplexity)  # (n,) tokens per example
        self.prefix = None  # computed with the first group
        self.seconds = 0.0  # spent computing rows in this process
        self.computed_tokens = 0

    @property
    def n_examples(self) -> int:
        return self.rows.n_examples

    @property
    def n_ready(self) -> int:
        return int(self.ready.sum())

    def ensure(self, examples: torch.Tensor) -> None:
        """Make the rows of `examples` ready: load them, or compute them with the next missing
        examples of `order` (one group) and store that group."""
        if bool(self.ready[examples].all()):
            return
        with self._locked():
            self._refresh()
            missing = examples[~self.ready[examples]]
            if len(missing):
                self._compute(self._group(missing))
            if self.path is not None and self.store and bool(self.ready.all()):
                self._finish()
        self._report()

    def ensure_all(self) -> None:
        """Make every row ready, group by group (reporting progress after each)."""
        while not bool(self.ready.all()):
            self.ensure(self.order[~self.ready[self.order]][:1])

    # -- computing ------------------------------------------------------------------------------

    def _group(self, missing: torch.Tensor) -> torch.Tensor:
        """`missing`, then the next missing examples of `order`, up to `GROUP_TOKENS` tokens
        (read only: `missing` alone, nothing is kept for later)."""
        if not self.store:
            return missing
        chosen = torch.zeros(self.n_examples, dtype=torch.bool)
        chosen[missing] = True
        budget = GROUP_TOKENS - int(self.widths[missing].sum())
        for i in self.order[~self.ready[self.order] & ~chosen[self.order]].tolist():
            if budget <= 0:
                break
            chosen[i], budget = True, budget - int(self.widths[i])
        return chosen.nonzero().squeeze(1)

    def _compute(self, examples: torch.Tensor) -> None:
        tic = time.perf_counter()
        backbone, training = self.model.base_model, self.model.base_model.training
        backbone.eval()  # no dropout in the rows, even when called from a training step
        try:
            with thread_count(forward_threads()):
                if self.prefix is None:
                    self.prefix = run_prefix(self.model, self.encoded, self.perplexity) or False
                hidden = example_rows(
                    self.model, self.encoded, examples, self.perplexity, self.prefix or None
                )  # (rows, d)
        finally:
            backbone.train(training)
        self.seconds += time.perf_counter() - tic
        self.computed_tokens += int(self.widths[examples].sum())
        self._fill(examples, hidden)
        if self.path is not None and self.store:
            self._write_part(examples, hidden)

    def _fill(self, examples: torch.Tensor, hidden: torch.Tensor) -> None:
        self.rows.hidden[self.rows.select(examples)] = hidden
        self.ready[examples] = True

    def rate(self) -> float | None:
        """Backbone tokens per second this process measured computing rows."""
        return self.computed_tokens / self.seconds if self.computed_tokens else None

    def eta(self) -> float | None:
        """Seconds left to compute the missing rows, at this process's measured speed."""
        rate = self.rate()
        return None if rate is None else int(self.widths[~self.ready].sum()) / rate

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.n_ready, self.n_examples, self.eta(), self.rate())

    # -- the files ------------------------------------------------------------------------------

    @property
    def parts_dir(self) -> Path:
        return self.path.with_suffix(".parts")

    @contextlib.contextmanager
    def _locked(self):
        """Hold the cache's lock (blocking while another process computes); no-op without a path."""
        if self.path is None or fcntl is None:
            yield
            return
        lock = self.path.with_suffix(".lock")
        if not self.store and not lock.is_file():  # read only: nothing stored here yet
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the only descriptor drops the flock

    def _refresh(self) -> None:
        """Load what is on disk and not yet here: the finished file, or new parts (lock held)."""
        if self.path is None:
            return
        from safetensors.torch import load_file

        if self.path.is_file():
            self.rows.hidden = load_file(self.path)["hidden"]
            self.ready[:] = True
            return
        if not self.parts_dir.is_dir():
            return
        for tmp in self.parts_dir.glob(".tmp-*"):  # left by a writer killed mid-write
            tmp.unlink(missing_ok=True)
        for part in sorted(self.parts_dir.glob("part-*.safetensors")):
            if part.name not in self.loaded:
                t = load_file(part)
                self._fill(t["examples"], t["hidden"])
                self.loaded.add(part.name)

    def _write_part(self, examples: torch.Tensor, hidden: torch.Tensor) -> None:
        from safetensors.torch import save_file

        self.parts_dir.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.safetensors"
        tmp = self.parts_dir / f".tmp-{name}"
        save_file({"examples": examples.contiguous(), "hidden": hidden.contiguous()}, tmp)
        os.replace(tmp, self.parts_dir / name)
        self.loaded.add(name)

    def _finish(self) -> None:
        """Merge the parts into the single file a finished cache is (lock held)."""
        import shutil

        from qpa.training.rows import save_rows

        if not self.path.is_file():
            save_rows(self.path, self.rows)
            log.info("cached %d backbone rows at %s", len(self.rows.targets), self.path)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
