"""Fused output-head cross-entropy: per-row NLL without ever holding (rows × vocab) logits.

For hidden rows h (R, d), a frozen head W (V, d) with optional bias b, and an optional LoRA
delta (A (r, d), B (V, r), scale s), the logits are h·Wᵀ + b + (s·h·Aᵀ)·Bᵀ. `head_nll` takes the
rows in chunks, as many as fit in `CHUNK_BYTES` (a whole training batch of the default model):
the rank-r term first (a thin GEMM), h·Wᵀ accumulated onto it (the GEMM that is the whole cost,
W read once per chunk), then an exact log-sum-exp per row. Memory stays flat however many rows
there are: one logits buffer per thread, reused from call to call (fresh pages cost more than
the thin GEMM that first touches them).

Gradients. With P = softmax(logits) and E the one-hot targets, the upstream gradient g (R,)
gives ∂logits = g·(P − E). Two of the three products, P·B (R, r) and P·W (R, d, only when h
needs a gradient), scale row by row with g, so they are accumulated during the forward pass
while each chunk of P is at hand. The third, ∂B = (P − E)ᵀ·(g·u) with u = s·h·Aᵀ, mixes rows;
it is accumulated as uᵀ·P, exact whenever g is the same for every row (a mean or a sum, what
training uses). For any other g the backward pass recomputes the chunks once. W and b get no
gradient: the head is frozen.

>>> _ = torch.manual_seed(0)
>>> h, w, t = torch.randn(5, 8), torch.randn(11, 8), torch.tensor([1, 0, 3, 10, 2])
>>> a, b = torch.randn(2, 8, requires_grad=True), torch.randn(11, 2, requires_grad=True)
>>> nll = head_nll(h, w, t, a, b, scaling=0.5)
>>> plain = torch.nn.functional.cross_entropy(h @ w.T + 0.5 * (h @ a.T) @ b.T, t, reduction="none")
>>> torch.allclose(nll, plain, atol=1e-5)
True
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import nn
from torch.autograd.function import once_differentiable

_buffers = threading.local()
CHUNK_BYTES = 128 << 20  # logits buffer: 682 rows of SmolLM2's 49,152-token vocabulary


@dataclass
class HeadParts:
    """What the fused loss needs from an output head: frozen W, b and the active LoRA pair."""

    weight: torch.Tensor  # (V, d)
    bias: torch.Tensor | None  # (V,)
    lora_a: torch.Tensor | None  # (r, d)
    lora_b: torch.Tensor | None  # (V, r)
    scaling: float


def head_nll(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    lora_a: torch.Tensor | None = None,
    lora_b: torch.Tensor | None = None,
    scaling: float = 1.0,
    bias: torch.Tensor | None = None,
    chunk_rows: int = 0,
) -> torch.Tensor:
    """Per-row NLL (R,) of `targets` under logits h·Wᵀ + b + s·(h·Aᵀ)·Bᵀ, chunk by chunk.

    Equals ``F.cross_entropy(logits, targets, reduction="none")``, gradients included, for
    `hidden`, `lora_a` and `lora_b`; `weight` and `bias` must not require gradients.
    `chunk_rows` = 0 picks the most rows whose logits fit in `CHUNK_BYTES`.
    """
    _check(hidden, weight, targets, lora_a, lora_b, bias, chunk_rows)
    if chunk_rows == 0:
        chunk_rows = max(1, CHUNK_BYTES // (weight.shape[0] * hidden.element_size()))
    if torch.is_grad_enabled() and (
        weight.requires_grad or (bias is not None and bias.requires_grad)
    ):
        raise ValueError("`weight` and `bias` of the fused head loss must be frozen (no grad).")
    tracked = (hidden, lora_a, lora_b)
    eager = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tracked)
    return _HeadNLL.apply(
        hidden, weight, bias, lora_a, lora_b, targets, float(scaling), chunk_rows, eager
    )


def head_parts(head: nn.Module) -> HeadParts | None:
    """The fused loss's view of `head` (a Linear, or peft's LoRA Linear); None when unsupported.

    Unsupported, and left to the plain path: non-float32 weights, GPT-2-style Conv1D heads,
    LoRA dropout while training, DoRA, LoRA bias, merged or disabled adapters, several adapters.
    """
    from peft.tuners.lora import LoraLayer

    if isinstance(head, LoraLayer):
        parts = _lora_parts(head)
    else:
        parts = (
            HeadParts(head.weight, head.bias, None, None, 1.0) if type(head) is nn.Linear else None
        )
    if parts is None or parts.weight.dtype != torch.float32:
        return None
    frozen = (parts.weight, parts.bias) if parts.bias is not None else (parts.weight,)
    return None if any(t.requires_grad for t in frozen) else parts


def _lora_parts(head) -> HeadParts | None:
    base = head.get_base_layer()
    if type(base) is not nn.Linear or (head.disable_adapters and head.merged):
        return None  # Conv1D; or peft would unmerge on the next forward
    active = [a for a in head.active_adapters if a in head.lora_A]
    if head.disable_adapters or head.merged or not active:
        return HeadParts(base.weight, base.bias, None, None, 1.0)  # the base layer alone
    if len(active) > 1 or active[0] in head.lora_variant:  # several adapters, DoRA, …
        return None
    name = active[0]
    dropout = head.lora_dropout[name]
    if isinstance(dropout, nn.Dropout) and dropout.p > 0 and dropout.training:
        return None
    lora_a, lora_b = head.lora_A[name], head.lora_B[name]
    if lora_a.bias is not None or lora_b.bias is not None:
        return None
    return HeadParts(base.weight, base.bias, lora_a.weight, lora_b.weight, head.scaling[name])


class _HeadNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, lora_a, lora_b, targets, scaling, chunk_rows, eager):
        lora = None if lora_a is None else _Lora(hidden, lora_a, lora_b, scaling)
        acc = _Accumulators.create(hidden, weight, lora, eager, ctx.needs_input_grad[0])
        lse = hidden.new_empty(hidden.shape[0])  # (R,)
        for rows, exps in _chunk_buffers(hidden, weight, chunk_rows):
            lse[rows], scale = _exp_logits(exps, hidden[rows], weight, bias, lora, rows)
            if eager:
                acc.add(exps, scale, rows, weight, lora)
        nll = lse - _target_logits(hidden, weight, bias, lora, targets)  # (R,)
        ctx.scaling, ctx.chunk_rows, ctx.eager = scaling, chunk_rows, eager
        ctx.acc, ctx.lora = acc, lora
        ctx.save_for_backward(hidden, weight, bias, lora_a, lora_b, targets)
        return nll

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        hidden, weight, bias, lora_a, lora_b, targets = ctx.saved_tensors
        if not ctx.eager:
            raise RuntimeError("head_nll ran without grad enabled; it cannot be differentiated.")
        acc, lora, needs = ctx.acc, ctx.lora, ctx.needs_input_grad
        grad_h = grad_a = grad_b = grad_low = None
        if lora is not None:
            grad_low = grad[:, None] * (acc.probs_b - lora_b[targets])  # (R, r)
            if needs[3]:
                grad_a = ctx.scaling * grad_low.t() @ hidden  # (r, d)
            if needs[4]:
                grad_b = _grad_lora_b(ctx, grad, hidden, weight, bias, lora, targets)
        if needs[0]:
            grad_h = grad[:, None] * (acc.probs_w - weight[targets])  # (R, d)
            if lora is not None:
                grad_h += ctx.scaling * grad_low @ lora_a
        ctx.acc = ctx.lora = None
        return grad_h, None, None, grad_a, grad_b, None, None, None, None


def _chunk_buffers(hidden, weight, chunk_rows):
    """(rows, (n, V) logits buffer) for each chunk of rows, balanced: no small remainder."""
    n_rows, vocab = hidden.shape[0], weight.shape[0]
    n_chunks = -(-n_rows // chunk_rows)
    size = max(1, -(-n_rows // max(1, n_chunks)))
    buffer = _scratch(min(size, n_rows), vocab, hidden)  # (n, V)
    for start in range(0, n_rows, size):
        rows = slice(start, min(n_rows, start + size))
        yield rows, buffer[: rows.stop - start]


def _scratch(n_rows: int, vocab: int, like: torch.Tensor) -> torch.Tensor:
    """A (n_rows, vocab) logits buffer, reused per thread, device and dtype.

    A fresh one of this size is a fresh memory map on CPU: a page fault on every first touch,
    which costs more than the thin GEMM that first writes it.
    """
    buffers = _buffers.__dict__.setdefault("by_kind", {})
    kind = (like.device, like.dtype)
    if kind not in buffers or buffers[kind].numel() < n_rows * vocab:
        buffers[kind] = like.new_empty(n_rows * vocab)
    return buffers[kind][: n_rows * vocab].view(n_rows, vocab)


class _Lora:
    """The LoRA pair in the layouts the chunk loop wants: u = s·h·Aᵀ (R, r) and Bᵀ (r, V)."""

    def __init__(self, hidden, lora_a, lora_b, scaling):
        self.low = torch.mm(hidden, lora_a.t()).mul_(scaling)  # (R, r)
        self.b_t = lora_b.t().contiguous()  # (r, V): thin GEMMs are 3× faster this way round


def _exp_logits(exps, hidden, weight, bias, lora, rows):
    """Fill `exps` (n, V) with exp(logits − row max); return the rows' log-sum-exp (n,) and
    1 / the row sums (n, 1), so that the softmax is exps · scale.

    Few, large ops on purpose: on a shared CPU every parallel op waits for its slowest thread,
    so splitting the vocabulary into cache-sized blocks cost more than the cache misses.
    """
    if lora is not None:
        torch.mm(lora.low[rows], lora.b_t, out=exps)  # the rank-r term first: (n, V)
        exps.addmm_(hidden, weight.t())  # += h·Wᵀ
    else:
        torch.mm(hidden, weight.t(), out=exps)
    if bias is not None:
        exps.add_(bias)
    top = exps.amax(dim=1, keepdim=True)  # (n, 1)
    total = exps.sub_(top).exp_().sum(dim=1, keepdim=True)  # (n, 1), ≥ 1
    return (top + total.log()).squeeze(1), total.reciprocal_()


@dataclass
class _Accumulators:
    """P·B (R, r), uᵀ·P (r, V) and P·W (R, d), filled chunk by chunk in the forward pass."""

    probs_b: torch.Tensor | None
    low_t_probs: torch.Tensor | None
    probs_w: torch.Tensor | None

    @classmethod
    def create(cls, hidden, weight, lora, eager, need_h) -> _Accumulators:
        if not eager:
            return cls(None, None, None)
        n_rows, rank = hidden.shape[0], 0 if lora is None else lora.low.shape[1]
        return cls(
            hidden.new_zeros(n_rows, rank) if lora else None,
            hidden.new_zeros(rank, weight.shape[0]) if lora else None,
            hidden.new_zeros(n_rows, weight.shape[1]) if need_h else None,
        )

    def add(self, exps, scale, rows, weight, lora) -> None:
        """Add one chunk's terms, P = exps · scale (see `_exp_logits`)."""
        if lora is not None:
            self.probs_b[rows] = torch.mm(exps, lora.b_t.t()).mul_(scale)  # (n, r)
            self.low_t_probs.addmm_((lora.low[rows] * scale).t(), exps)  # (r, V)
        if self.probs_w is not None:
            self.probs_w[rows] = torch.mm(exps, weight).mul_(scale)  # (n, d)


def _target_logits(hidden, weight, bias, lora, targets) -> torch.Tensor:
    """The logit of each row's target, (R,), from gathered rows of W and B."""
    picked = (hidden * weight[targets]).sum(1)  # (R,)
    if bias is not None:
        picked = picked + bias[targets]
    if lora is not None:
        picked = picked + (lora.low * lora.b_t.t()[targets]).sum(1)
    return picked


def _grad_lora_b(ctx, grad, hidden, weight, bias, lora, targets) -> torch.Tensor:
    """∂B = Pᵀ·(g·u) − Eᵀ·(g·u): from the forward's uᵀ·P when g is uniform, else recomputed."""
    weighted = grad[:, None] * lora.low  # (R, r)
    if grad.numel() == 0 or bool((grad == grad[0]).all()):
        grad_t = ctx.acc.low_t_probs * grad[:1]  # (r, V)
    else:  # recompute the chunks, weighting each row's uᵀ·P term by its own g
        grad_t = hidden.new_zeros(lora.b_t.shape)  # (r, V)
        for rows, exps in _chunk_buffers(hidden, weight, ctx.chunk_rows):
            _, scale = _exp_logits(exps, hidden[rows], weight, bias, lora, rows)
            grad_t.addmm_((weighted[rows] * scale).t(), exps)
    return grad_t.t().contiguous().index_add_(0, targets, weighted, alpha=-1)  # (V, r)


def _check(hidden, weight, targets, lora_a, lora_b, bias, chunk_rows) -> None:
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"`hidden` {tuple(hidden.shape)} and `weight` {tuple(weight.shape)} must be "
            "(R, d) and (V, d)."
        )
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"`targets` {tuple(targets.shape)} must be ({hidden.shape[0]},).")
    if (lora_a is None) != (lora_b is None):
        raise ValueError("`lora_a` and `lora_b` come together: give both or neither.")
    if lora_a is not None and (
        lora_a.shape[1] != weight.shape[1] or lora_b.shape != (weight.shape[0], lora_a.shape[0])
    ):
        raise ValueError(
            f"`lora_a` {tuple(lora_a.shape)} and `lora_b` {tuple(lora_b.shape)} must be "
            f"(r, {weight.shape[1]}) and ({weight.shape[0]}, r)."
        )
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"`bias` {tuple(bias.shape)} must be ({weight.shape[0]},).")
    if chunk_rows < 0:
        raise ValueError(f"`chunk_rows` = {chunk_rows} must be ≥ 0 (0: automatic).")
