"""The classical half of QPA: post-processed probabilities and basis bits → chunks of weights.

Row i of the mapping model's input is ``[s_1 … s_N, x_i]``: the N bits of basis state i as ±1
(qubit 0 first, PennyLane's order) and its post-processed probability (paper Eq. 2, 5–8)

    x = (β · tanh(γ · 2^(N−1) · p))^α − mean(x)

optionally followed by Fourier features of the row index (`index_features`). The MLP maps each
row to ``chunk_size`` values; the generator concatenates the chunks. Stacked, the chunks form an
(n_chunks × chunk_size) matrix whose rank the MLP's shape caps (`MappingModel.rank_ceiling`).

>>> basis_bits(2, 4).tolist()
[[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

ACTIVATIONS = {
    "none": nn.Identity,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}
EPS = 1e-12  # keeps d(p^α)/dp finite at p = 0


def basis_bits(n_qubits: int, n_rows: int) -> torch.Tensor:
    """±1 bit strings of basis states 0 … n_rows−1, most significant (qubit 0) first."""
    idx = torch.arange(n_rows).unsqueeze(1)  # (n_rows, 1)
    shifts = torch.arange(n_qubits - 1, -1, -1)  # (N,)
    return ((idx >> shifts) & 1).float() * 2 - 1  # (n_rows, N)


def random_bits(
    n_qubits: int, n_rows: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The official code's pairing: distinct random basis states, little-endian, re-drawn per call."""
    idx = torch.randperm(2**n_qubits, generator=generator)[:n_rows].unsqueeze(1)  # (n_rows, 1)
    shifts = torch.arange(n_qubits)  # (N,) little-endian: bit k = (idx >> k) & 1
    return ((idx >> shifts) & 1).float() * 2 - 1  # (n_rows, N)


def index_features(n_rows: int, n_frequencies: int) -> torch.Tensor:
    """sin and cos of 2π·k·i / n_rows for k = 1 … n_frequencies: (n_rows, 2·n_frequencies).

    >>> index_features(4, 1).round(decimals=3).tolist()
    [[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, -0.0]]
    """
    i = torch.arange(n_rows, dtype=torch.float64).unsqueeze(1)  # (n_rows, 1)
    k = torch.arange(1, n_frequencies + 1, dtype=torch.float64)  # (F,)
    phase = 2 * torch.pi * i * k / n_rows  # (n_rows, F)
    return torch.cat([phase.sin(), phase.cos()], dim=1).float()  # (n_rows, 2F)


def postprocess(probs: torch.Tensor, gamma: float, beta: float, alpha: float) -> torch.Tensor:
    """(β·tanh(γ·2^(N−1)·p))^α − mean, over all 2^N probabilities (the last axis).

    One autograd node with its derivative written out: a dozen tiny ops and their backward
    nodes would cost more than the circuit itself.
    """
    return _PostProcess.apply(probs, float(gamma), float(beta), float(alpha))


class _PostProcess(torch.autograd.Function):
    @staticmethod
    def forward(ctx, probs, gamma, beta, alpha):
        slope = gamma * probs.shape[-1] / 2  # γ·2^(N−1)
        squashed = torch.tanh(probs * slope)  # (…, 2^N)
        base = (beta * squashed).clamp_min_(EPS)  # (…, 2^N)
        x = base.pow(alpha)  # (…, 2^N)
        ctx.save_for_backward(squashed, base, x)
        ctx.constants = slope, beta, alpha
        return x - x.mean(dim=-1, keepdim=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        squashed, base, x = ctx.saved_tensors
        slope, beta, alpha = ctx.constants
        grad = grad - grad.mean(dim=-1, keepdim=True)  # through the centring
        grad = grad * alpha * x / base  # d(base^α) = α·base^(α−1)
        grad = grad.masked_fill_(beta * squashed < EPS, 0.0)  # clamped: no gradient (clamp_min)
        return grad * (beta * slope) * (1 - squashed * squashed), None, None, None


class MappingModel(nn.Module):
    """MLP (N+1+extra) → hidden_sizes … → chunk_size; the last Linear is the "last layer"."""

    def __init__(
        self,
        n_qubits: int,
        hidden_sizes: tuple[int, ...],
        chunk_size: int,
        activation: str = "none",
        extra_inputs: int = 0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation` = {activation!r} is not one of: {', '.join(ACTIVATIONS)}."
            )
        self.activation = activation
        widths = (n_qubits + 1 + extra_inputs, *hidden_sizes)
        self.widths = widths
        layers: list[nn.Module] = []
        for d_in, d_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(d_in, d_out), ACTIVATIONS[activation]()]
        self.body = nn.Sequential(*layers)
        self.last = nn.Linear(widths[-1], chunk_size)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.last(self.body(rows))  # (n_chunks, N+1) → (n_chunks, chunk_size)

    def rank_ceiling(self) -> int:
        """Most linearly independent outputs (bias included) whatever the rows and weights.

        Without activations the map is affine, so its outputs span at most the narrowest width
        plus one (the bias); with them, the last hidden width plus one.

        >>> MappingModel(7, (32, 64, 32), 2048).rank_ceiling()
        9
        >>> MappingModel(7, (32, 64, 32), 2048, "gelu").rank_ceiling()
        33
        """
        width = min(self.widths) if self.activation == "none" else self.widths[-1]
        return width + 1
