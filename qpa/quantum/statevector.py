"""Exact, differentiable simulator of the QPA ansatz, as pure torch functions.

The QPA generator (paper §2.2) reads its 2**n_qubits probabilities from this circuit: the
qubits start in |0…0⟩; each of the `depth` blocks applies R_Y(θ[l, k]) to every qubit k, then a
CNOT ladder 0→1, 1→2, …, (n_qubits-2)→(n_qubits-1), control first. The "ring" entangler appends
CNOT (n_qubits-1)→0 to every block whenever n_qubits ≥ 2, so for two qubits a ring block is
CNOT 0→1 then CNOT 1→0 (TorchQuantum's ``circular=True`` pairs); one qubit has no CNOT.

R_Y and CNOT keep amplitudes real, so the state is a real vector in the dtype of the angles, in
PennyLane's basis order (qubit 0 is the most significant bit): `circuit_probs` equals
``qml.probs(wires=range(n_qubits))`` element by element, gradients included. `QuantumCircuit`
(built by `make_circuit` from a `QPAConfig`) adds the options of paper App. G: depolarising
noise (`qpa.quantum.noise`) and finite measurement shots (`qpa.quantum.shots`).

How it is fast. A block's R_Y layer is a Kronecker product of 2×2 rotations. Up to
`_FOLD_QUBITS` qubits it is one dense (2**N, 2**N) matrix with the CNOT permutation folded into
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

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from qpa.quantum.shots import sample_probs

if TYPE_CHECKING:
    from qpa.config import QPAConfig

ENTANGLERS = ("ladder", "ring")
_FOLD_QUBITS = 6  # up to this many qubits: one dense matrix per block, CNOTs folded in
_GROUP_QUBITS = 5  # beyond: groups of at most this many (fastest on CPU, N = 7…18)


class _Plan(NamedTuple):
    """Everything fixed for one (n_qubits, entangler, device, dtype), computed once."""

    groups: tuple[tuple[int, int], ...]  # (first qubit, qubit count) per group
    source: torch.Tensor  # (2**N,) basis index each amplitude comes from through the CNOTs
    destination: torch.Tensor  # (2**N,) the inverse permutation of `source`
    table_index: tuple[torch.Tensor, ...]  # per group (g * 4**g,): gathers its Kronecker entries
    generators: tuple[torch.Tensor, ...]  # per group (4**g, g): flattened ½·J_k, qubit k

    @property
    def folded(self) -> bool:  # one group: the CNOT permutation lives in its matrix rows
        return len(self.groups) == 1


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
    _check_angles(angles)
    _check_entangler(entangler)
    plan = _plan(angles.shape[1], entangler, angles.device, angles.dtype)
    return _Circuit.apply(angles, plan)


class QuantumCircuit(nn.Module):
    """The QPA circuit as a module: trainable `angles` in, probabilities out.

    `noise` > 0 simulates depolarising noise after every block (`qpa.quantum.noise`, a density matrix);
    `shots` > 0 replaces the probabilities by a fresh estimate from that many measurements on
    every call, with a straight-through gradient (`qpa.quantum.shots`). Both 0: the exact statevector.

    >>> _ = torch.manual_seed(0)
    >>> circuit = QuantumCircuit(n_qubits=3, depth=2)
    >>> circuit
    QuantumCircuit(n_qubits=3, depth=2, entangler='ladder')
    >>> circuit().shape, round(circuit().sum().item(), 6)
    (torch.Size([8]), 1.0)
    >>> QuantumCircuit(n_qubits=3, depth=2, noise=0.01, shots=1000)
    QuantumCircuit(n_qubits=3, depth=2, entangler='ladder', noise=0.01, shots=1000)
    """

    def __init__(
        self,
        n_qubits: int,
        depth: int,
        entangler: str = "ladder",
        noise: float = 0.0,
        shots: int = 0,
    ):
        super().__init__()
        _check_count("n_qubits", n_qubits)
        _check_count("depth", depth)
        _check_entangler(entangler)
        if noise:
            from qpa.quantum.noise import check_noisy_qubits  # qpa.noise builds on this module

            check_noisy_qubits(n_qubits, noise)
        if shots:
            _check_count("shots", shots)
        self.n_qubits, self.depth, self.entangler = n_qubits, depth, entangler
        self.noise, self.shots = noise, shots
        self.angles = nn.Parameter(torch.empty(depth, n_qubits))  # (depth, N)
        nn.init.uniform_(self.angles, -math.pi, math.pi)

    def forward(self) -> torch.Tensor:
        if self.noise:
            from qpa.quantum.noise import noisy_probs

            probs = noisy_probs(self.angles, self.noise, self.entangler)  # (2**N,)
        else:
            probs = circuit_probs(self.angles, self.entangler)  # (2**N,)
        return sample_probs(probs, self.shots) if self.shots else probs

    def extra_repr(self) -> str:
        text = f"n_qubits={self.n_qubits}, depth={self.depth}, entangler={self.entangler!r}"
        if self.noise:
            text += f", noise={self.noise:g}"
        if self.shots:
            text += f", shots={self.shots}"
        return text


def make_circuit(n_qubits: int, config: QPAConfig) -> QuantumCircuit:
    """The circuit a QPA generator of `n_qubits` uses under `config` (depth, entangler, noise,
    shots); its one parameter is `angles`, whatever the options.

    >>> from qpa.config import QPAConfig
    >>> make_circuit(4, QPAConfig(depth=3, noise=0.02))
    QuantumCircuit(n_qubits=4, depth=3, entangler='ladder', noise=0.02)
    """
    return QuantumCircuit(
        n_qubits, config.depth, config.entangler, noise=config.noise, shots=config.shots
    )


class _Circuit(torch.autograd.Function):
    """ψ_l = P·K_l·ψ_(l-1) from ψ_0 = |0…0⟩, with K_l = ⊗_k R_Y(θ[l, k]) and P the CNOTs.

    Backward is the adjoint method: λ_(l-1) = K_lᵀ·Pᵀ·λ_l walks back from λ_L = ∂loss/∂ψ_L, and
    since ∂R_Y(θ)/∂θ = ½·R_Y(θ)·J with J = [[0, -1], [1, 0]], ∂loss/∂θ[l, k] is
    ½⟨Pᵀλ_l, J_k·K_l·ψ_(l-1)⟩. Unfolded, the saved pairs are (K_l·ψ_(l-1), Pᵀλ_l); folded,
    they are (ψ_l, λ_l) and the generators carry the permutation instead.
    """

    @staticmethod
    def forward(ctx, angles: torch.Tensor, plan: _Plan) -> torch.Tensor:
        transposed = _group_matrices(angles, plan)  # per group (L, 2**g, 2**g)
        blocks = list(zip(*(m.unbind(0) for m in transposed), strict=True))  # L × groups
        state = _first_column(blocks[0])  # (2**N,) K_1·|0…0⟩, or ψ_1 when folded
        saved = [state]
        for block in blocks[1:]:
            state = _apply(_entangle(state, plan.source, plan), block)  # (2**N,)
            saved.append(state)
        ctx.plan, ctx.blocks = plan, blocks
        ctx.save_for_backward(torch.stack(saved))  # (L, 2**N)
        return _entangle(state, plan.source, plan)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_state: torch.Tensor) -> tuple[torch.Tensor, None]:
        plan, (states,) = ctx.plan, ctx.saved_tensors  # (L, 2**N)
        adjoint = _entangle(grad_state, plan.destination, plan)  # (2**N,)
        saved = [adjoint]
        for block in ctx.blocks[:0:-1]:
            adjoint = _apply(adjoint, [matrix.mT for matrix in block])  # K_lᵀ·μ_l
            adjoint = _entangle(adjoint, plan.destination, plan)  # (2**N,)
            saved.append(adjoint)
        return _angle_grads(states, torch.stack(saved[::-1]), plan), None


def _group_matrices(angles: torch.Tensor, plan: _Plan) -> list[torch.Tensor]:
    """Each group's R_Y Kronecker product K, transposed, for every block: (L, 2**g, 2**g) each.

    K[r, c] is the product over the group's qubits k of R_Y(θ_k)[r_k, c_k], with R_Y =
    [[cos, -sin], [sin, cos]] of the half-angle: one gather from a (cos, -sin, sin, cos) table
    and one product over the qubits. Folded, K's rows come in CNOT order. Kᵀ is what the
    row-major GEMMs of `_apply` want.
    """
    depth, n_qubits = angles.shape
    half = angles * 0.5  # (L, N)
    cos, sin = half.cos(), half.sin()  # (L, N)
    table = torch.stack((cos, -sin, sin, cos), dim=-1).view(depth, n_qubits * 4)  # (L, N*4)
    matrices = []
    for (_, size), index in zip(plan.groups, plan.table_index, strict=True):
        factors = table.index_select(1, index).view(depth, size, 4**size)  # (L, g, 4**g)
        matrices.append(factors.prod(dim=1).view(depth, 2**size, 2**size))  # (L, 2**g, 2**g)
    return matrices


def _first_column(transposed: Sequence[torch.Tensor]) -> torch.Tensor:
    """A block applied to |0…0⟩: the Kronecker product of the first columns of its K's."""
    state = transposed[0][0]  # (2**g0,)
    for matrix in transposed[1:]:
        state = torch.outer(state, matrix[0]).view(-1)  # (2**(g0+…+gi),)
    return state


def _apply(state: torch.Tensor, transposed: Sequence[torch.Tensor]) -> torch.Tensor:
    """(⊗ M)·state given each group's Mᵀ: one GEMM per group, moving its axis last.

    The state is read with the group's qubits as its leading axis and written with them as its
    last, so after every group the qubit order is back where it started.
    """
    if len(transposed) == 1:
        return state @ transposed[0]  # (2**N,)
    for matrix in transposed:
        state = torch.mm(state.view(matrix.shape[0], -1).t(), matrix)  # (rest, 2**g)
    return state.view(-1)  # (2**N,)


def _entangle(state: torch.Tensor, index: torch.Tensor, plan: _Plan) -> torch.Tensor:
    """Permute basis states by the CNOTs (`source`) or back (`destination`); folded: no-op."""
    return state if plan.folded else state.index_select(0, index)  # (2**N,)


def _angle_grads(states: torch.Tensor, adjoints: torch.Tensor, plan: _Plan) -> torch.Tensor:
    """½⟨μ_l, J_k·φ_l⟩ for every block l and qubit k, from (L, 2**N) pairs; result (L, N)."""
    grads = []
    for (first, size), generators in zip(plan.groups, plan.generators, strict=True):
        cross = _cross(adjoints, states, first, size)  # (L, 2**g, 2**g)
        grads.append(cross.view(states.shape[0], -1) @ generators)  # (L, g)
    return torch.cat(grads, dim=1)  # (L, N)


def _cross(left: torch.Tensor, right: torch.Tensor, first: int, size: int) -> torch.Tensor:
    """Σ over the other qubits of left[.., i, ..]·right[.., j, ..] on one group's axis.

    (L, 2**N) twice → (L, 2**g, 2**g), with batched GEMMs on views, never a transposed copy.
    """
    depth, dim, before = left.shape[0], 2**size, 2**first
    after = left.shape[1] // (before * dim)
    if before == 1:
        return left.view(depth, dim, after) @ right.view(depth, dim, after).mT
    if after == 1:
        return left.view(depth, before, dim).mT @ right.view(depth, before, dim)
    left = left.view(depth * before, dim, after)  # (L*before, 2**g, after)
    products = left @ right.view(depth * before, dim, after).mT  # (L*before, 2**g, 2**g)
    return products.view(depth, before, dim, dim).sum(dim=1)


@functools.lru_cache(maxsize=64)
def _plan(
    n_qubits: int, entangler: str, device: torch.device, dtype: torch.dtype, max_group: int = 0
) -> _Plan:
    """Split the qubits into balanced groups (one if few); build every index and table.

    `max_group` > 0 caps the group size instead (batched callers want small group matrices).
    """
    if max_group:
        n_groups = -(-n_qubits // max_group)
    else:
        n_groups = 1 if n_qubits <= _FOLD_QUBITS else -(-n_qubits // _GROUP_QUBITS)
    sizes = [n_qubits // n_groups + (i < n_qubits % n_groups) for i in range(n_groups)]
    groups = tuple((sum(sizes[:i]), size) for i, size in enumerate(sizes))
    source, destination = _cnot_permutation(n_qubits, entangler)  # (2**N,) each
    table_index, generators = [], []
    for first, size in groups:
        rows = source if n_groups == 1 else torch.arange(2**size)  # (2**g,)
        table_index.append(_table_index(first, size, rows).to(device))
        generators.append((0.5 * _generators(size, rows)).to(device, dtype))
    return _Plan(
        groups, source.to(device), destination.to(device), tuple(table_index), tuple(generators)
    )


def _cnot_permutation(n_qubits: int, entangler: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, destination) of basis indices through one block's CNOTs, (2**N,) each."""
    pairs = [(q, q + 1) for q in range(n_qubits - 1)]
    if entangler == "ring" and n_qubits >= 2:
        pairs.append((n_qubits - 1, 0))
    index = torch.arange(2**n_qubits)
    bits = [(index >> (n_qubits - 1 - q)) & 1 for q in range(n_qubits)]  # qubit 0 = MSB
    for control, target in pairs:
        bits[target] = bits[target] ^ bits[control]
    destination = sum(bit << (n_qubits - 1 - q) for q, bit in enumerate(bits))
    source = torch.empty_like(index)
    source[destination] = index
    return source, destination


def _table_index(first: int, size: int, rows: torch.Tensor) -> torch.Tensor:
    """Where entry (c, r) of a group's Kᵀ finds its factors in the (N*4) table, (g * 4**g,).

    The factor of local qubit k is column 4·(first+k) + 2·bit_k(rows[r]) + bit_k(c).
    """
    local = torch.arange(size)[:, None]  # (g, 1) local qubit, most significant first
    shift = size - 1 - local
    row_bits = (rows[None, :] >> shift) & 1  # (g, 2**g)
    col_bits = (torch.arange(2**size)[None, :] >> shift) & 1  # (g, 2**g)
    code = 2 * row_bits[:, None, :] + col_bits[:, :, None]  # (g, 2**g c, 2**g r)
    return (4 * (first + local[:, :, None]) + code).reshape(-1)


def _generators(size: int, rows: torch.Tensor) -> torch.Tensor:
    """Column k is J = [[0, -1], [1, 0]] on local qubit k, flattened; rows/cols permuted by `rows`.

    J_k[i, j] is ±1 where j = i with bit k flipped: +1 when bit k of i is set, -1 otherwise.
    """
    i, j = rows[:, None], rows[None, :]  # (2**g, 1), (1, 2**g)
    columns = []
    for k in range(size):
        bit = 1 << (size - 1 - k)
        sign = torch.where(i & bit != 0, 1.0, -1.0)  # (2**g, 1)
        columns.append((sign * ((i ^ j) == bit)).reshape(-1))  # (4**g,)
    return torch.stack(columns, dim=1)  # (4**g, g)


def _check_angles(angles: torch.Tensor) -> None:
    if not isinstance(angles, torch.Tensor):
        raise TypeError(f"`angles` must be a torch.Tensor, got {type(angles).__name__}.")
    if angles.dim() != 2 or 0 in angles.shape:
        raise ValueError(
            f"`angles` must have shape (depth, n_qubits) with both ≥ 1, got {tuple(angles.shape)}."
        )
    if not angles.is_floating_point():
        raise ValueError(f"`angles` must be a real floating-point tensor, got {angles.dtype}.")


def _check_entangler(entangler: str) -> None:
    if entangler not in ENTANGLERS:
        raise ValueError(f"`entangler` = {entangler!r} is not one of {', '.join(ENTANGLERS)}.")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` = {value!r} must be an integer ≥ 1.")
