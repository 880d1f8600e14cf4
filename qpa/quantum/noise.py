"""The QPA circuit under depolarising noise, simulated exactly with a density matrix (App. G).

Each of the `depth` blocks is the noiseless block of `qpa.quantum.statevector` (R_Y on every qubit, then the
CNOTs) followed by a depolarising channel of probability p on every qubit,

    ρ ↦ (1 − p)·ρ + p/3·(XρX + YρY + ZρZ) = (1 − λ)·ρ + λ·(Tr_k ρ) ⊗ I/2,   λ = 4p/3,

PennyLane's ``qml.DepolarizingChannel(p, wires=k)``. R_Y, CNOT and this channel map real
symmetric matrices to real symmetric matrices (YρY = XZρZX), so ρ is a real (2**N, 2**N) matrix
in the dtype of the angles, in PennyLane's basis order: `noisy_probs` equals ``qml.probs`` of
``default.mixed``. Memory and time grow as 4**N, so N is capped at `MAX_NOISY_QUBITS`.

How it is computed. A block's unitary part U·ρ·Uᵀ reuses the noiseless simulator's group
matrices: ρ is read as a state of 2N qubits (rows, then columns) and every group matrix is
applied twice, once to the row qubits and once to the column qubits; the CNOT permutation acts
on both indices. The channel is a few in-place passes per qubit and, being self-adjoint, is its
own backward; the rest is autograd. Gradients are exact for any loss on the probabilities.

>>> import torch
>>> bell = torch.tensor([[torch.pi / 2, 0.0]])
>>> noisy_probs(bell, noise=0.0)
tensor([0.5000, 0.0000, 0.0000, 0.5000])
>>> noisy_probs(bell, noise=0.75)  # p = 3/4 depolarises completely
tensor([0.2500, 0.2500, 0.2500, 0.2500])
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from qpa.config import MAX_NOISY_QUBITS
from qpa.quantum.kernels import (
    apply_groups,
    check_angles,
    check_entangler,
    group_matrices,
    make_plan,
)


def noisy_probs(angles: torch.Tensor, noise: float, entangler: str = "ladder") -> torch.Tensor:
    """Measurement probabilities of the noisy QPA circuit, shape (2**n_qubits,).

    `angles` has shape (depth, n_qubits); `noise` is the depolarising probability p in [0, 1]
    applied to every qubit after every block.
    """
    return density_matrix(angles, noise, entangler).diagonal().contiguous()  # (2**N,)


def density_matrix(angles: torch.Tensor, noise: float, entangler: str = "ladder") -> torch.Tensor:
    """The final density matrix ρ of the noisy QPA circuit, real, shape (2**N, 2**N)."""
    check_angles(angles)
    check_entangler(entangler)
    n_qubits = angles.shape[1]
    check_noisy_qubits(n_qubits, noise)
    plan = make_plan(n_qubits, entangler, angles.device, angles.dtype)
    transposed = group_matrices(angles, plan)  # per group (L, 2**g, 2**g)
    dim = 2**n_qubits
    rho = angles.new_zeros(dim, dim)  # (2**N, 2**N)
    rho[0, 0] = 1  # |0…0⟩⟨0…0|
    for block in zip(*(m.unbind(0) for m in transposed), strict=True):
        rho = apply_groups(rho.view(-1), list(block) * 2).view(dim, dim)  # K·ρ·Kᵀ, rows then columns
        if not plan.folded:  # folded: the CNOTs are in the group matrix already
            rho = rho.index_select(0, plan.source).index_select(1, plan.source)  # P·ρ·Pᵀ
        rho = depolarize(rho, noise)
    return rho


def depolarize(rho: torch.Tensor, noise: float) -> torch.Tensor:
    """The depolarising channel of probability `noise` on every qubit of ρ (2**N, 2**N)."""
    return rho if noise == 0 else _Depolarize.apply(rho, 1 - 4 * noise / 3)


class _Depolarize(torch.autograd.Function):
    """ρ ↦ keep·ρ + (1 − keep)·(Tr_k ρ) ⊗ I/2 on every qubit k, keep = 1 − λ.

    The channel is self-adjoint (its Kraus operators I, X, Y, Z are Hermitian), so the backward
    pass applies it to the gradient: no autograd graph of per-qubit ops.
    """

    @staticmethod
    def forward(ctx, rho: torch.Tensor, keep: float) -> torch.Tensor:
        ctx.keep = keep
        return _depolarize_(rho.clone(memory_format=torch.contiguous_format), keep)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _depolarize_(grad.clone(memory_format=torch.contiguous_format), ctx.keep), None


def _depolarize_(rho: torch.Tensor, keep: float) -> torch.Tensor:
    """The channel in place: per qubit, the two blocks where its row and column bits agree
    (ρ_00, ρ_11) move towards their mean, and every entry shrinks by `keep`."""
    dim = rho.shape[0]
    n_qubits = dim.bit_length() - 1
    for k in range(n_qubits):
        axes = (2**k, 2, 2 ** (n_qubits - 1 - k))  # (before, qubit k, after)
        r = rho.view(*axes, *axes)  # (B, 2, A, B, 2, A)
        zero, one = r[:, 0, :, :, 0, :], r[:, 1, :, :, 1, :]  # (B, A, B, A) views
        mix = (zero + one).mul_((1 - keep) / 2)  # (B, A, B, A) (1 − keep)·Tr_k ρ / 2
        r.mul_(keep)
        zero.add_(mix)
        one.add_(mix)
    return rho


def check_noisy_qubits(n_qubits: int, noise: float) -> None:
    """Raise if `noise` is out of [0, 1] or the density matrix of `n_qubits` is too large."""
    if not 0 <= noise <= 1:
        raise ValueError(f"`noise` = {noise!r} must be a probability in [0, 1].")
    if n_qubits > MAX_NOISY_QUBITS:
        entries = 4**n_qubits
        raise ValueError(
            f"`noise` = {noise:g} needs a {2**n_qubits:,}×{2**n_qubits:,} density matrix "
            f"({entries:,} entries) for `n_qubits` = {n_qubits}; the noisy simulation stops at "
            f"{MAX_NOISY_QUBITS} qubits: set `noise` to 0, or use fewer qubits (a larger "
            "`chunk_size`)."
        )
