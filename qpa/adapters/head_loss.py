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

DoRA. A per-output factor c = m / ‖W + s·B·A‖ (V,) scales the logits before the bias:
c ⊙ z + b with z = h·Wᵀ + u·Bᵀ. Each chunk keeps z in a second buffer; ∂c = Σ_rows ∂logits ⊙ z is
accumulated as Pᵀ-weighted z during the forward pass, like uᵀ·P; the other gradients take c into
B (P·(c⊙B)) and scale ∂B by c.

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
    dora: torch.Tensor | None = None  # (V,) DoRA's factor m / ‖W + s·B·A‖


def head_nll(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    lora_a: torch.Tensor | None = None,
    lora_b: torch.Tensor | None = None,
    scaling: float = 1.0,
    bias: torch.Tensor | None = None,
    chunk_rows: int = 0,
    dora: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row NLL (R,) of `targets` under logits h·Wᵀ + b + s·(h·Aᵀ)·Bᵀ, chunk by chunk;
    with a DoRA factor `dora` (V,), under dora ⊙ (h·Wᵀ + s·(h·Aᵀ)·Bᵀ) + b.

    Equals ``F.cross_entropy(logits, targets, reduction="none")``, gradients included, for
    `hidden`, `lora_a`, `lora_b` and `dora`; `weight` and `bias` must not require gradients.
    `chunk_rows` = 0 picks the most rows whose logits fit in `CHUNK_BYTES`.
    """
    _check(hidden, weight, targets, lora_a, lora_b, bias, chunk_rows, dora)
    if chunk_rows == 0:
        chunk_rows = max(1, CHUNK_BYTES // (weight.shape[0] * hidden.element_size()))
    if torch.is_grad_enabled() and (
        weight.requires_grad or (bias is not None and bias.requires_grad)
    ):
        raise ValueError("`weight` and `bias` of the fused head loss must be frozen (no grad).")
    tracked = (hidden, lora_a, lora_b, dora)
    eager = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tracked)
    return _HeadNLL.apply(
        hidden, weight, bias, lora_a, lora_b, dora, targets, float(scaling), chunk_rows, eager
    )


def head_parts(head: nn.Module, dora_norm: str = "constant") -> HeadParts | None:
    """The fused loss's view of `head` (a Linear, or peft's LoRA Linear); None when unsupported.
    With `dora_norm` = "differentiated", a DoRA factor carries the gradient of its row norm.

    Unsupported, and left to the plain path: non-float32 weights, GPT-2-style Conv1D heads,
    LoRA dropout while training, LoRA bias, merged or disabled adapters, several adapters,
    variants other than DoRA.
    """
    from peft.tuners.lora import LoraLayer

    if isinstance(head, LoraLayer):
        parts = _lora_parts(head, dora_norm == "differentiated")
    else:
        parts = (
            HeadParts(head.weight, head.bias, None, None, 1.0) if type(head) is nn.Linear else None
        )
    if parts is None or parts.weight.dtype != torch.float32:
        return None
    frozen = (parts.weight, parts.bias) if parts.bias is not None else (parts.weight,)
    return None if any(t.requires_grad for t in frozen) else parts


def _lora_parts(head, norm_grad: bool) -> HeadParts | None:
    base = head.get_base_layer()
    if type(base) is not nn.Linear or (head.disable_adapters and head.merged):
        return None  # Conv1D; or peft would unmerge on the next forward
    active = [a for a in head.active_adapters if a in head.lora_A]
    if head.disable_adapters or head.merged or not active:
        return HeadParts(base.weight, base.bias, None, None, 1.0)  # the base layer alone
    variant = head.lora_variant.get(active[0]) if len(active) == 1 else None
    if len(active) > 1 or (variant is not None and type(variant) is not _dora_variant()):
        return None  # several adapters, a variant other than DoRA
    name = active[0]
    dropout = head.lora_dropout[name]
    if isinstance(dropout, nn.Dropout) and dropout.p > 0 and dropout.training:
        return None
    lora_a, lora_b = head.lora_A[name], head.lora_B[name]
    if lora_a.bias is not None or lora_b.bias is not None:
        return None
    parts = HeadParts(base.weight, base.bias, lora_a.weight, lora_b.weight, head.scaling[name])
    if name in head.lora_variant:
        magnitude = head.lora_magnitude_vector[name].weight  # (V,)
        with torch.set_grad_enabled(norm_grad and torch.is_grad_enabled()):
            norm = dora_norm(parts.weight, parts.lora_a, parts.lora_b, parts.scaling)
        parts.dora = magnitude / norm
    return parts


def _dora_variant():
    from peft.tuners.lora.variants import DoraLinearVariant

    return DoraLinearVariant


def dora_norm(weight, lora_a, lora_b, scaling) -> torch.Tensor:
    """‖W + s·B·A‖ per output row (V,), as peft's DoRA computes it, from thin products:
    ‖W_v‖² + 2s·B_v·(A·W_vᵀ) + s²·B_v·(A·Aᵀ)·B_vᵀ (differentiable in A and B where grad is on)."""
    wa = weight @ lora_a.t()  # (V, r)
    square = torch.linalg.vector_norm(weight, dim=1).square()  # (V,), no (V, d) temporary
    square = square + 2 * scaling * (lora_b * wa).sum(1)
    square = square + scaling**2 * ((lora_b @ (lora_a @ lora_a.t())) * lora_b).sum(1)
    return square.clamp_min(1e-12).sqrt()


class _HeadNLL(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, hidden, weight, bias, lora_a, lora_b, dora, targets, scaling, chunk_rows, eager
    ):
        lora = None if lora_a is None else _Lora(hidden, lora_a, lora_b, scaling, dora)
        acc = _Accumulators.create(hidden, weight, lora, eager, ctx.needs_input_grad[0])
        lse = hidden.new_empty(hidden.shape[0])  # (R,)
        for rows, exps, z in _chunk_buffers(hidden, weight, chunk_rows, dora is not None):
            lse[rows], scale = _exp_logits(exps, z, hidden[rows], weight, bias, lora, rows)
            if eager:
                acc.add(exps, z, scale, rows, weight, lora)
        raw = _target_logits(hidden, weight, lora, targets)  # (R,) before DoRA and bias
        picked = raw if dora is None else raw * dora[targets]
        nll = lse - (picked if bias is None else picked + bias[targets])  # (R,)
        ctx.scaling, ctx.chunk_rows, ctx.eager = scaling, chunk_rows, eager
        ctx.acc, ctx.lora = acc, lora
        ctx.save_for_backward(hidden, weight, bias, lora_a, targets, raw)
        return nll

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        hidden, weight, bias, lora_a, targets, raw = ctx.saved_tensors
        if not ctx.eager:
            raise RuntimeError("head_nll ran without grad enabled; it cannot be differentiated.")
        acc, lora, needs = ctx.acc, ctx.lora, ctx.needs_input_grad
        grad_h = grad_a = grad_b = grad_low = grad_dora = None
        if lora is not None:
            grad_low = grad[:, None] * (acc.probs_b - lora.used_t.t()[targets])  # (R, r)
            if needs[3]:
                grad_a = ctx.scaling * grad_low.t() @ hidden  # (r, d)
            if needs[4] or needs[5]:
                grad_b, probs_z = _grad_lora_b(ctx, grad, hidden, weight, bias, lora, targets)
                if probs_z is not None:  # ∂c = Σ_rows ∂logits ⊙ z: P's part minus the targets'
                    grad_dora = probs_z.index_add_(0, targets, grad * raw, alpha=-1)  # (V,)
        if needs[0]:
            rows_w = weight[targets]  # (R, d)
            if lora is not None and lora.dora is not None:
                rows_w = rows_w * lora.dora[targets, None]
            grad_h = grad[:, None] * (acc.probs_w - rows_w)  # (R, d)
            if lora is not None:
                grad_h += ctx.scaling * grad_low @ lora_a
        ctx.acc = ctx.lora = None
        return grad_h, None, None, grad_a, grad_b, grad_dora, None, None, None, None


def _chunk_buffers(hidden, weight, chunk_rows, with_z=False):
    """(rows, (n, V) logits buffer, (n, V) z buffer or None) for each chunk of rows, balanced:
    no small remainder. The z buffer (DoRA's logits before its factor) only `with_z`."""
    n_rows, vocab = hidden.shape[0], weight.shape[0]
    n_chunks = -(-n_rows // chunk_rows)
    size = max(1, -(-n_rows // max(1, n_chunks)))
    buffer = _scratch(min(size, n_rows), vocab, hidden, 0)  # (n, V)
    extra = _scratch(min(size, n_rows), vocab, hidden, 1) if with_z else None  # (n, V)
    for start in range(0, n_rows, size):
        rows = slice(start, min(n_rows, start + size))
        n = rows.stop - start
        yield rows, buffer[:n], None if extra is None else extra[:n]


def _scratch(n_rows: int, vocab: int, like: torch.Tensor, which: int) -> torch.Tensor:
    """A (n_rows, vocab) buffer, reused per thread, device, dtype and `which`.

    A fresh one of this size is a fresh memory map on CPU: a page fault on every first touch,
    which costs more than the thin GEMM that first writes it.
    """
    buffers = _buffers.__dict__.setdefault("by_kind", {})
    kind = (like.device, like.dtype, which)
    if kind not in buffers or buffers[kind].numel() < n_rows * vocab:
        buffers[kind] = like.new_empty(n_rows * vocab)
    return buffers[kind][: n_rows * vocab].view(n_rows, vocab)


class _Lora:
    """The LoRA pair in the layouts the chunk loop wants: u = s·h·Aᵀ (R, r), Bᵀ (r, V), and
    B as the logits use it, (c ⊙ B)ᵀ (r, V) with a DoRA factor c (V,), else Bᵀ."""

    def __init__(self, hidden, lora_a, lora_b, scaling, dora):
        self.low = torch.mm(hidden, lora_a.t()).mul_(scaling)  # (R, r)
        self.b_t = lora_b.t().contiguous()  # (r, V): thin GEMMs are 3× faster this way round
        self.dora = dora  # (V,) or None
        self.used_t = self.b_t if dora is None else self.b_t * dora  # (r, V)


def _exp_logits(exps, z, hidden, weight, bias, lora, rows):
    """Fill `exps` (n, V) with exp(logits − row max); return the rows' log-sum-exp (n,) and
    1 / the row sums (n, 1), so that the softmax is exps · scale. With DoRA, `z` (n, V) keeps
    the logits before the factor: h·Wᵀ + u·Bᵀ.

    Few, large ops on purpose: on a shared CPU every parallel op waits for its slowest thread,
    so splitting the vocabulary into cache-sized blocks cost more than the cache misses.
    """
    out = exps if z is None else z
    if lora is not None:
        torch.mm(lora.low[rows], lora.b_t, out=out)  # the rank-r term first: (n, V)
        out.addmm_(hidden, weight.t())  # += h·Wᵀ
    else:
        torch.mm(hidden, weight.t(), out=out)
    if z is not None:
        torch.mul(z, lora.dora, out=exps)  # c ⊙ z
    if bias is not None:
        exps.add_(bias)
    top = exps.amax(dim=1, keepdim=True)  # (n, 1)
    total = exps.sub_(top).exp_().sum(dim=1, keepdim=True)  # (n, 1), ≥ 1
    return (top + total.log()).squeeze(1), total.reciprocal_()


@dataclass
class _Accumulators:
    """P·(c⊙B) (R, r), uᵀ·P (r, V), P·(c⊙W) (R, d) and, with DoRA, Σ_rows P ⊙ z (V,), filled
    chunk by chunk in the forward pass."""

    probs_b: torch.Tensor | None
    low_t_probs: torch.Tensor | None
    probs_w: torch.Tensor | None
    probs_z: torch.Tensor | None

    @classmethod
    def create(cls, hidden, weight, lora, eager, need_h) -> _Accumulators:
        if not eager:
            return cls(None, None, None, None)
        n_rows, rank = hidden.shape[0], 0 if lora is None else lora.low.shape[1]
        return cls(
            hidden.new_zeros(n_rows, rank) if lora else None,
            hidden.new_zeros(rank, weight.shape[0]) if lora else None,
            hidden.new_zeros(n_rows, weight.shape[1]) if need_h else None,
            hidden.new_zeros(weight.shape[0]) if lora and lora.dora is not None else None,
        )

    def add(self, exps, z, scale, rows, weight, lora) -> None:
        """Add one chunk's terms, P = exps · scale (see `_exp_logits`); `z` is consumed."""
        if lora is not None:
            self.probs_b[rows] = torch.mm(exps, lora.used_t.t()).mul_(scale)  # (n, r)
            self.low_t_probs.addmm_((lora.low[rows] * scale).t(), exps)  # (r, V)
        if self.probs_w is not None:
            probs = exps if z is None else exps * lora.dora  # (n, V)
            self.probs_w[rows] = torch.mm(probs, weight).mul_(scale)  # (n, d)
        if self.probs_z is not None:
            self.probs_z += (scale.t() @ z.mul_(exps)).squeeze(0)  # (V,)


def _target_logits(hidden, weight, lora, targets) -> torch.Tensor:
    """Each row's target logit before DoRA's factor and the bias, (R,), from gathered rows."""
    picked = (hidden * weight[targets]).sum(1)  # (R,)
    if lora is not None:
        picked = picked + (lora.low * lora.b_t.t()[targets]).sum(1)
    return picked


def _grad_lora_b(ctx, grad, hidden, weight, bias, lora, targets):
    """∂B = c ⊙ (Pᵀ·(g·u) − Eᵀ·(g·u)) (V, r), and with DoRA Pᵀ-weighted z, Σ_rows g·P ⊙ z (V,):
    from the forward's sums when g is uniform, else recomputed chunk by chunk."""
    weighted = grad[:, None] * lora.low  # (R, r)
    probs_z = ctx.acc.probs_z
    if grad.numel() == 0 or bool((grad == grad[0]).all()):
        grad_t = ctx.acc.low_t_probs * grad[:1]  # (r, V)
        probs_z = None if probs_z is None else probs_z * grad[:1]  # (V,)
    else:  # recompute the chunks, weighting each row's terms by its own g
        grad_t = hidden.new_zeros(lora.b_t.shape)  # (r, V)
        probs_z = None if probs_z is None else torch.zeros_like(probs_z)
        for rows, exps, z in _chunk_buffers(hidden, weight, ctx.chunk_rows, probs_z is not None):
            _, scale = _exp_logits(exps, z, hidden[rows], weight, bias, lora, rows)
            grad_t.addmm_((weighted[rows] * scale).t(), exps)
            if probs_z is not None:
                probs_z += ((grad[rows, None] * scale).t() @ z.mul_(exps)).squeeze(0)
    grad_b = grad_t.t().contiguous().index_add_(0, targets, weighted, alpha=-1)  # (V, r)
    return (grad_b if lora.dora is None else grad_b * lora.dora[:, None]), probs_z


def _check(hidden, weight, targets, lora_a, lora_b, bias, chunk_rows, dora) -> None:
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
    if dora is not None and (lora_a is None or dora.shape != weight.shape[:1]):
        raise ValueError(f"`dora` must be ({weight.shape[0]},) and come with `lora_a`, `lora_b`.")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"`bias` {tuple(bias.shape)} must be ({weight.shape[0]},).")
    if chunk_rows < 0:
        raise ValueError(f"`chunk_rows` = {chunk_rows} must be ≥ 0 (0: automatic).")
