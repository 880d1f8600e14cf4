"""Exact, differentiable simulator of the QPA ansatz, as pure torch functions.

The QPA generator (paper §2.2) reads its 2**n_qubits probabilities from this circuit: the
qubits start in |0…0⟩; each of the `depth` blocks applies R_Y(θ[l, k]) to every qubit k, then a
CNOT ladder 0→1, 1→2, …, (n_qubits-2)→(n_qubits-1), control first. The "ring" entangler appends
CNOT (n_qubits-1)→0 to every block whenever n_qubits ≥ 2, so for two qubits a ring block is
CNOT 0→1 then CNOT 1→0 (TorchQuantum's ``circular=True`` pairs); one qubit has no CNOT.

R_Y and CNOT keep amplitudes real, so the state is a real vector in the dtype of the angles, in
PennyLane's basis order (qubit 0 is the most significant bit): `circuit_probs` equals
``qml.probs(wires=range(n_qubits))`` element by element, gradients included. `qpa.generator.circuit.QuantumCircuit`
adds the options of paper App. G: depolarising noise (`qpa.quantum.noise`) and finite
measurement shots (`qpa.quantum.shots`).

How it is fast. A block's R_Y layer is a Kronecker product of 2×2 rotations. Up to
`qpa.quantum.kernels._FOLD_QUBITS` qubits it is one dense (2**N, 2**N) matrix with the CNOT permutation folded into
its rows, so a block is one matrix-vector product. Beyond, the qubits form groups of at most
`_GROUP_QUBITS`; each group's matrix is one GEMM on the state that also moves the group's axis
last (after all groups the order is back), and the CNOTs are one `index_select` with a
permutation computed once per (n_qubits, entangler). All group matrices of all blocks come from
one gather and one product over a cos/sin table of the half-angles. Backward is the adjoint
method inside a custom autograd function: no graph of small ops, about the cost of the forward.

>>> import torch
>>> circuit_probs(torch.tensor([[torch.pi / 2, 0.0]]))  # R_Y(π/2) on qubit 0, CNOT 0→1: a Bell pair
tensor([0.5000, 0.0000, 0.0000, 0.5000])
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from qpa.quantum.kernels import (
    Plan,
    angle_grads,
    apply_groups,
    check_angles,
    check_entangler,
    entangle,
    first_column,
    group_matrices,
    make_plan,
)


def circuit_probs(angles: torch.Tensor, entangler: str = "ladder") -> torch.Tensor:
    """Measurement probabilities of the QPA circuit, differentiable w.r.t. `angles`.

    `angles` has shape (depth, n_qubits); the result has shape (2**n_qubits,), the dtype and
    device of `angles`, and PennyLane's basis order. Gradients are first order only: the
    backward pass is written by hand (adjoint method), and differentiating it again raises.

    >>> probs = circuit_probs(torch.zeros(3, 4), entangler="ring")  # all R_Y(0): stays |0000⟩
    >>> probs.shape, probs[0].item()
    (torch.Size([16]), 1.0)
    """
    state = circuit_state(angles, entangler)  # (2**N,)
    return state * state


def circuit_state(angles: torch.Tensor, entangler: str = "ladder") -> torch.Tensor:
    """Real amplitudes of the QPA circuit's final state, shape (2**n_qubits,)."""
    check_angles(angles)
    check_entangler(entangler)
    plan = make_plan(angles.shape[1], entangler, angles.device, angles.dtype)
    return _Circuit.apply(angles, plan)


class _Circuit(torch.autograd.Function):
    """ψ_l = P·K_l·ψ_(l-1) from ψ_0 = |0…0⟩, with K_l = ⊗_k R_Y(θ[l, k]) and P the CNOTs.

    Backward is the adjoint method: λ_(l-1) = K_lᵀ·Pᵀ·λ_l walks back from λ_L = ∂loss/∂ψ_L, and
    since ∂R_Y(θ)/∂θ = ½·R_Y(θ)·J with J = [[0, -1], [1, 0]], ∂loss/∂θ[l, k] is
    ½⟨Pᵀλ_l, J_k·K_l·ψ_(l-1)⟩. Unfolded, the saved pairs are (K_l·ψ_(l-1), Pᵀλ_l); folded,
    they are (ψ_l, λ_l) and the generators carry the permutation instead.
    """

    @staticmethod
    def forward(ctx, angles: torch.Tensor, plan: Plan) -> torch.Tensor:
        transposed = group_matrices(angles, plan)  # per group (L, 2**g, 2**g)
        blocks = list(zip(*(m.unbind(0) for m in transposed), strict=True))  # L × groups
        state = first_column(blocks[0])  # (2**N,) K_1·|0…0⟩, or ψ_1 when folded
        saved = [state]
        for block in blocks[1:]:
            state = apply_groups(entangle(state, plan.source, plan), block)  # (2**N,)
            saved.append(state)
        ctx.plan, ctx.blocks = plan, blocks
        ctx.save_for_backward(torch.stack(saved))  # (L, 2**N)
        return entangle(state, plan.source, plan)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_state: torch.Tensor) -> tuple[torch.Tensor, None]:
        plan, (states,) = ctx.plan, ctx.saved_tensors  # (L, 2**N)
        adjoint = entangle(grad_state, plan.destination, plan)  # (2**N,)
        saved = [adjoint]
        for block in ctx.blocks[:0:-1]:
            adjoint = apply_groups(adjoint, [matrix.mT for matrix in block])  # K_lᵀ·μ_l
            adjoint = entangle(adjoint, plan.destination, plan)  # (2**N,)
            saved.append(adjoint)
        return angle_grads(states, torch.stack(saved[::-1]), plan), None
