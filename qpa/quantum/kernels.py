"""The block kernels shared by the statevector and density-matrix simulators.

A block of the QPA circuit is R_Y on every qubit, then the CNOTs. `make_plan` fixes, once per
(n_qubits, entangler, device, dtype), how the qubits are grouped, the CNOT permutation and the
gather indices; `group_matrices` builds every group's R_Y Kronecker product for every block
from one cos/sin table; `apply_groups` applies one block's group matrices to a state with one
GEMM per group. See `qpa.quantum.statevector` for how they make the simulator fast.

>>> import torch
>>> p = make_plan(2, "ladder", torch.device("cpu"), torch.float32)
>>> p.groups, p.folded
(((0, 2),), True)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch

ENTANGLERS = ("ladder", "ring")
_FOLD_QUBITS = 6  # up to this many qubits: one dense matrix per block, CNOTs folded in
_GROUP_QUBITS = 5  # beyond: groups of at most this many (fastest on CPU, N = 7…18)


class Plan(NamedTuple):
    """Everything fixed for one (n_qubits, entangler, device, dtype), computed once."""

    groups: tuple[tuple[int, int], ...]  # (first qubit, qubit count) per group
    source: torch.Tensor  # (2**N,) basis index each amplitude comes from through the CNOTs
    destination: torch.Tensor  # (2**N,) the inverse permutation of `source`
    table_index: tuple[torch.Tensor, ...]  # per group (g * 4**g,): gathers its Kronecker entries
    generators: tuple[torch.Tensor, ...]  # per group (4**g, g): flattened ½·J_k, qubit k

    @property
    def folded(self) -> bool:  # one group: the CNOT permutation lives in its matrix rows
        return len(self.groups) == 1


def group_matrices(angles: torch.Tensor, plan: Plan) -> list[torch.Tensor]:
    """Each group's R_Y Kronecker product K, transposed, for every block: (L, 2**g, 2**g) each.

    K[r, c] is the product over the group's qubits k of R_Y(θ_k)[r_k, c_k], with R_Y =
    [[cos, -sin], [sin, cos]] of the half-angle: one gather from a (cos, -sin, sin, cos) table
    and one product over the qubits. Folded, K's rows come in CNOT order. Kᵀ is what the
    row-major GEMMs of `apply_groups` want.
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


def first_column(transposed: Sequence[torch.Tensor]) -> torch.Tensor:
    """A block applied to |0…0⟩: the Kronecker product of the first columns of its K's."""
    state = transposed[0][0]  # (2**g0,)
    for matrix in transposed[1:]:
        state = torch.outer(state, matrix[0]).view(-1)  # (2**(g0+…+gi),)
    return state


def apply_groups(state: torch.Tensor, transposed: Sequence[torch.Tensor]) -> torch.Tensor:
    """(⊗ M)·state given each group's Mᵀ: one GEMM per group, moving its axis last.

    The state is read with the group's qubits as its leading axis and written with them as its
    last, so after every group the qubit order is back where it started.
    """
    if len(transposed) == 1:
        return state @ transposed[0]  # (2**N,)
    for matrix in transposed:
        state = torch.mm(state.view(matrix.shape[0], -1).t(), matrix)  # (rest, 2**g)
    return state.view(-1)  # (2**N,)


def entangle(state: torch.Tensor, index: torch.Tensor, plan: Plan) -> torch.Tensor:
    """Permute basis states by the CNOTs (`source`) or back (`destination`); folded: no-op."""
    return state if plan.folded else state.index_select(0, index)  # (2**N,)


def angle_grads(states: torch.Tensor, adjoints: torch.Tensor, plan: Plan) -> torch.Tensor:
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
def make_plan(
    n_qubits: int, entangler: str, device: torch.device, dtype: torch.dtype, max_group: int = 0
) -> Plan:
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
    return Plan(
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


def check_angles(angles: torch.Tensor) -> None:
    if not isinstance(angles, torch.Tensor):
        raise TypeError(f"`angles` must be a torch.Tensor, got {type(angles).__name__}.")
    if angles.dim() != 2 or 0 in angles.shape:
        raise ValueError(
            f"`angles` must have shape (depth, n_qubits) with both ≥ 1, got {tuple(angles.shape)}."
        )
    if not angles.is_floating_point():
        raise ValueError(f"`angles` must be a real floating-point tensor, got {angles.dtype}.")


def check_entangler(entangler: str) -> None:
    if entangler not in ENTANGLERS:
        raise ValueError(f"`entangler` = {entangler!r} is not one of {', '.join(ENTANGLERS)}.")


def check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` = {value!r} must be an integer ≥ 1.")


@contextlib.contextmanager
def one_thread():
    """One intra-op thread: these small GEMMs gain little from more, and on a busy machine
    threads waiting for each other made one (N, L) point 60× slower (N = 12, L = 64)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
