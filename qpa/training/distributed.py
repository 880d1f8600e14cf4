"""More than one process: the glue between the training loop and `accelerate` (DDP).

``accelerate launch --multi_gpu --num_processes N -m qpa train …`` (torchrun underneath, on one
machine or several) starts N copies of the same command; `world_for` joins them into one job
through an `accelerate.Accelerator`. Then:

- every rank loads the model, the data and the adapter alike and seeds them alike, so they start
  equal (DDP also broadcasts rank 0's tensors when it wraps the step);
- each training step, every rank takes its share of the *global* batch (`shard`: every N-th
  example), the step's forward runs through DDP (`Accelerator.prepare`) and the gradients are
  averaged before the optimizer step. Each rank's loss is its sum of row NLLs × N / the global
  row count, so the averaged gradient is that of one process's mean over the same batch, and the
  loss curve is one process's (`tests/test_distributed.py`);
- the random pairing draws a training step's bit strings from a generator seeded by the seed and
  the step, the same on every rank (an evaluation's draws, one per batch as in the official code,
  differ by rank as they differ by call); `check_agreement` hashes the trainable tensors and the
  weights the last training step generated on every rank at each evaluation, and stops the run
  if any rank differs;
- evaluations shard their batches by rank and add up the sums; decisions that lead to collective
  calls are taken once (`agree`, `lead`, `broadcast`): a stop request read by rank 0 stops every
  rank after the same step, and only rank 0 writes the run folder, the metrics, the checkpoints,
  the export and the base model's cached metrics.

One process gets `World`, whose every method is the identity: without a launcher, the loop is
the single-process loop, bit for bit, and accelerate is never imported.

>>> world = World()
>>> world.shard(torch.arange(6)).tolist(), world.agree(False), world.total([1.5, 2.0])
([0, 1, 2, 3, 4, 5], False, [1.5, 2.0])
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from qpa.training.launch import launched_processes


class World:
    """One process: every method is the identity, every collective a no-op."""

    size, rank, is_main = 1, 0, True
    device: torch.device | None = None  # None: `TrainConfig.device` decides

    def shard(self, items):
        """This rank's share of `items` (a tensor or list): every `size`-th, from `rank`."""
        return items

    def rows_order(self, order: torch.Tensor, batch_size: int, whole: bool) -> torch.Tensor:
        """The examples this rank will need, in the order it needs them: of each batch of
        `order` its share of the examples, or (`whole`) its share of the batches."""
        return order

    def total(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks."""
        return values

    def agree(self, flag: bool) -> bool:
        """True on every rank when it is True on any (a stop request, a signal)."""
        return flag

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` (picklable), on every rank."""
        return value

    def lead(self, task: Callable[[], Any], public: Callable[[Any], Any] = lambda _: None) -> Any:
        """Run `task` on rank 0 alone: its result there, `public(result)` on the others. A
        ValueError it raises is raised on every rank, so none waits for the others in vain."""
        return task()

    def barrier(self) -> None:
        """Wait until every rank is here (rank 0 has written the end of the run)."""

    def prepare_step(self, session) -> None:
        """Wrap the training forward for the collective backward (DDP)."""

    def before_step(self, session, step: int) -> None:
        """Seed what must be drawn alike on every rank in training step `step`."""

    def step_loss(self, session, examples: torch.Tensor, assistant_only: bool):
        """(loss to backpropagate, mean NLL of the global batch, its rows): one process's
        mean over `examples`, on every row when the batch has no reply token."""
        from qpa.training.session import split_loss

        nll, _ = split_loss(session, "train", examples, assistant_only=assistant_only)
        if not nll.numel():  # prompts filled every example of the batch: learn from all its tokens
            nll, _ = split_loss(session, "train", examples)
        loss = nll.mean()
        return loss, loss.item(), nll.numel()

    def check_agreement(self, session) -> str | None:
        """A digest of what must be equal on every rank (None for one process)."""
        return None


class StepLoss(nn.Module):
    """The training forward as one module, so that DDP's reducer sees the step: per-row NLL of
    this rank's `examples` (a list: DDP moves tensor inputs to the GPU)."""

    def __init__(self, session) -> None:
        super().__init__()
        self.model, self.tuner = session.model, session.tuner
        self.session = session

    def forward(self, examples: list[int], assistant_only: bool) -> torch.Tensor:
        from qpa.training.session import split_loss

        # empty, but attached to every trainable tensor: a rank with no rows (or no reply
        # rows) still gives DDP a zero gradient for each of them
        anchor = torch.cat([p.reshape(-1)[:0] for _, p in self.session.trainable()])
        if not examples:
            return anchor
        nll, _ = split_loss(self.session, "train", torch.tensor(examples), assistant_only)
        return nll + anchor.to(nll.device) if not nll.numel() else nll  # (R,)


class Accelerated(World):
    """The processes of one `accelerate launch`, joined by an `accelerate.Accelerator`."""

    def __init__(self, cpu: bool) -> None:
        from accelerate import Accelerator

        # precision is `TrainConfig.precision`'s (the generator stays fp32), not accelerate's
        self.accelerator = Accelerator(cpu=cpu, mixed_precision="no")
        self.size = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        self.device = self.accelerator.device
        self.module: nn.Module | None = None
        self.generated: list[torch.Tensor] = []  # the weights the last training step generated

    def shard(self, items):
        return items[self.rank :: self.size]

    def rows_order(self, order: torch.Tensor, batch_size: int, whole: bool) -> torch.Tensor:
        return shard_order(order, batch_size, self.rank, self.size, whole)

    def total(self, values: list[float]) -> list[float]:
        summed = self.accelerator.reduce(
            torch.tensor(values, dtype=torch.float64, device=self.device), "sum"
        )
        return summed.tolist()

    def agree(self, flag: bool) -> bool:
        return self.total([float(flag)])[0] > 0

    def broadcast(self, value: Any) -> Any:
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]

    def lead(self, task, public=lambda _: None):
        result, outcome = None, None
        if self.is_main:
            try:
                result = task()
                outcome = ("ok", public(result))
            except ValueError as e:
                outcome = ("error", str(e))
                self.broadcast(outcome)
                raise
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise ValueError(value)
        return result if self.is_main else value

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def prepare_step(self, session) -> None:
        self.module = self.accelerator.prepare(StepLoss(session))

    def before_step(self, session, step: int) -> None:
        if session.tuner is not None:
            session.tuner.seed_pairing(session.config.train.seed * 1_000_003 + step)

    def step_loss(self, session, examples, assistant_only):
        mine = self.shard(examples)
        if assistant_only:  # decided on the global batch, as one process decides it
            rows = session.rows["train"]
            replies = float(rows.assistant[rows.select(mine)].sum())
            assistant_only = self.total([replies])[0] > 0
        nll = self.module(mine.tolist(), assistant_only)  # (R,) this rank's rows
        if session.tuner is not None:  # kept (not copied) for `check_agreement`
            self.generated = [t.detach() for t in session.tuner.written()]
        local = nll.sum()
        total, n_rows = self.total([local.item(), float(nll.numel())])
        loss = local * (self.size / max(n_rows, 1.0))  # DDP averages: Σ ranks = the global mean
        return loss, total / max(n_rows, 1.0), int(n_rows)

    def check_agreement(self, session) -> str:
        from accelerate.utils import gather_object

        digest = fingerprint(session, self.generated)
        digests = gather_object([digest])
        if len(set(digests)) > 1:
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            raise RuntimeError(
                f"The {self.size} processes diverged: rank(s) {differ} hold other trainable "
                "tensors or generated weights than rank 0."
            )
        return digest


def shard_order(
    order: torch.Tensor, batch_size: int, rank: int, size: int, whole: bool
) -> torch.Tensor:
    """Rank `rank`'s part of `order` cut into batches: every `size`-th example of each batch
    (training: the global batch is shared), or (`whole`) every `size`-th batch (evaluation).

    >>> order = torch.tensor([5, 3, 0, 1, 4, 2])
    >>> shard_order(order, 4, 1, 2, whole=False).tolist(), shard_order(order, 2, 1, 2, whole=True).tolist()
    ([3, 1, 2], [0, 1])
    """
    batches = list(order.split(batch_size))
    mine = batches[rank::size] if whole else [b[rank::size] for b in batches]
    return torch.cat(mine) if mine else order[:0]


def fingerprint(session, generated: list[torch.Tensor] = ()) -> str:
    """SHA-256 of the trainable tensors and of `generated`, the weights a training step
    generated. (An evaluation's random pairing draws differ by rank, as they differ by call.)"""
    sha = hashlib.sha256()
    for tensor in [t for _, t in session.trainable()] + list(generated):
        sha.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


_WORLD: World | None = None


def world_for(device: torch.device) -> World:
    """This process's world: `World` without a launcher, else the launch's `Accelerated`
    (created once per process; `device` picks the CPU (gloo) or the GPUs)."""
    global _WORLD
    if launched_processes() == 1:
        return World()
    if _WORLD is None:
        _WORLD = Accelerated(cpu=device.type == "cpu")
    return _WORLD
