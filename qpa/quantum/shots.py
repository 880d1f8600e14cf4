"""Finite measurement shots: probabilities estimated from a multinomial sample (paper App. G).

A device does not return the probabilities p of the QPA circuit, it returns the counts of
`shots` measurements in the computational basis, a Multinomial(shots, p) sample. `sample_probs`
puts counts / shots in place of p, re-drawn on every call, with a straight-through gradient:
the forward value is the estimate, the backward pass uses the exact ∂p/∂θ (sampling has no
useful derivative, and the estimate is unbiased, E[counts / shots] = p).

The counts are drawn by splitting the shots down the binary tree of basis states, one qubit per
level (qubit 0 first): a node's count goes to its two children by one binomial draw with the
children's share of its probability. That is an exact multinomial sample in N vectorised
binomial draws, whatever the number of shots, with no (shots,) tensor. Draws come from
`generator`, else from torch's global generator, so ``torch.manual_seed`` makes them repeatable.

>>> _ = torch.manual_seed(0)
>>> bell = torch.tensor([0.5, 0.0, 0.0, 0.5])
>>> counts = sample_counts(bell, shots=1000)
>>> counts[1:3].tolist(), counts.sum().item()  # |01⟩ and |10⟩ never occur; all shots counted
([0, 0], 1000)
"""

from __future__ import annotations

import torch


def sample_counts(
    probs: torch.Tensor, shots: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Counts of `shots` measurements of the distribution `probs`, shape (2**N,), int64.

    `probs` (2**N,) need not be normalised exactly (float32 circuits sum to 1 ± 1e-6): the
    sample is drawn from probs / probs.sum(). Negative rounding residue counts as zero.
    """
    _check_shots(shots)
    _check_probs(probs)
    p = probs.detach().to(torch.float64).clamp_min(0)  # (2**N,)
    counts = p.new_full((1,), float(shots))  # (1,) all shots at the root
    while counts.numel() < p.numel():
        mass = p.reshape(2 * counts.numel(), -1).sum(1).view(-1, 2)  # (nodes, 2) children's mass
        total = mass.sum(1)  # (nodes,)
        share = torch.where(total > 0, mass[:, 0] / total, 0.5).clamp(0, 1)  # (nodes,)
        left = torch.binomial(counts, share, generator=generator)  # (nodes,)
        counts = torch.stack((left, counts - left), dim=1).view(-1)  # (2 * nodes,)
    return counts.round().long()


def sample_probs(
    probs: torch.Tensor, shots: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """counts / shots in the forward pass, the gradient of `probs` in the backward pass.

    >>> probs = torch.tensor([0.25, 0.75], requires_grad=True)
    >>> estimate = sample_probs(probs, shots=100)
    >>> round(estimate.sum().item(), 6), estimate.requires_grad
    (1.0, True)
    """
    estimate = sample_counts(probs, shots, generator).to(probs.dtype) / shots  # (2**N,)
    return estimate + (probs - probs.detach())  # value: exactly the estimate; gradient: probs'


def _check_shots(shots: int) -> None:
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ValueError(f"`shots` = {shots!r} must be a whole number ≥ 1 (0 means exact).")


def _check_probs(probs: torch.Tensor) -> None:
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"`probs` must be a torch.Tensor, got {type(probs).__name__}.")
    size = probs.numel()
    if probs.dim() != 1 or size < 2 or size & (size - 1):
        raise ValueError(f"`probs` must have shape (2**n_qubits,), got {tuple(probs.shape)}.")
