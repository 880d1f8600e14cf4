"""Barren-plateau explorer: the variance of cost gradients over random circuits (paper App. H).

For each qubit count N and depth L, `samples` angle sets θ ~ U(−π, π)^(L×N) are drawn and the
gradient ∂C/∂θ of a cost C is computed exactly with the fast simulator (`qpa.quantum.statevector`, or
`qpa.quantum.noise` under depolarising noise). A barren plateau is a variance that falls exponentially
with N; `fit_decay` fits that rate. The costs (`COSTS`):

- ``local``: ⟨Z₀⟩ = P(qubit 0 is 0) − P(qubit 0 is 1), one qubit's observable;
- ``global``: P(|0…0⟩), the probability of the all-zeros state, a global observable;
- ``generator``: the whole QPA generator (this circuit, post-processing and the mapping MLP of
  `config`, generating 2^N · chunk_size values: every basis state is a chunk) and a fixed
  quadratic loss on its output, mean((v − t)²) with t ~ N(0, 1) drawn once; the mapping is
  initialised once per N, as PyTorch initialises it, and only θ varies. It runs in float32, as
  training does; the circuit costs run in float64.

Each row reports the variance over samples of every ∂C/∂θ[l, k], averaged over the N·L angles
(`variance`; angles outside the cost's light cone, e.g. far qubits at small depth for
``local``, add zeros), and that of the first angle θ[0, 0] alone (`variance_first`).

>>> rows = gradient_variance([2, 4], [8], samples=50, cost="global")
>>> [row["n_qubits"] for row in rows], rows[0]["variance"] > rows[1]["variance"]
([2, 4], True)
>>> fit_decay(rows)[0]["factor_per_qubit"] < 1
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from qpa.config import MAX_NOISY_QUBITS, MAX_SEED, QPAConfig, field_help
from qpa.generator.circuit import make_circuit
from qpa.quantum.kernels import group_matrices, make_plan, one_thread
from qpa.tool_config import VarianceConfig

COSTS = {
    "local": "⟨Z₀⟩, the expectation of Pauli Z on qubit 0",
    "global": "P(|0…0⟩), the probability of the all-zeros state",
    "generator": "mean squared error of the whole QPA generator's output to a fixed target",
}
_GRID = field_help(VarianceConfig)
# time and memory grow as 2^N; the generator cost also runs the mapping MLP on 2^N rows
MAX_QUBITS = {"local": _GRID["qubits"]["max"], "global": _GRID["qubits"]["max"], "generator": 12}
MAX_DEPTH = _GRID["depths"]["max"]
_BATCH_GROUP = 3  # qubits per group matrix when batched: S·L small matrices, not S·L dense ones
_BATCH_ENTRIES = 1 << 22  # samples × 2^N × depth per batched pass: ~32 MB per saved state


def gradient_variance(
    qubits: Sequence[int] | str,
    depths: Sequence[int] | str,
    samples: int = 200,
    cost: str = "local",
    seed: int = 0,
    config: QPAConfig | None = None,
) -> list[dict]:
    """One row per (n_qubits, depth): {cost, n_qubits, depth, samples, variance,
    variance_first, seconds}. `qubits` and `depths` are lists or comma-separated text;
    `config` (default `QPAConfig()`) gives the entangler, the noise and, for the generator
    cost, the mapping; its `n_qubits`, `depth` and `shots` are replaced.
    """
    _check_cost(cost)
    qubits = _counts("qubits", qubits, MAX_QUBITS[cost])
    depths = _counts("depths", depths, MAX_DEPTH)
    samples = _count("samples", samples, _GRID["samples"]["min"], _GRID["samples"]["max"])
    seed = _count("seed", seed, 0, MAX_SEED)
    config = config or QPAConfig()
    if config.noise > 0 and max(qubits) > MAX_NOISY_QUBITS:
        raise ValueError(
            f"`qubits` up to {max(qubits)} with `noise` = {config.noise:g}: the noisy "
            f"simulation stops at {MAX_NOISY_QUBITS} qubits."
        )
    rows = []
    for n_qubits in qubits:
        for depth in depths:
            tic = time.perf_counter()
            angles = random_angles(samples, depth, n_qubits, seed)  # (S, L, N)
            with one_thread():
                grads = cost_gradients(angles, cost, config, seed)  # (S, L, N)
            rows.append(
                {
                    "cost": cost,
                    "n_qubits": n_qubits,
                    "depth": depth,
                    "samples": samples,
                    "variance": grads.var(dim=0).mean().item(),
                    "variance_first": grads[:, 0, 0].var().item(),
                    "seconds": time.perf_counter() - tic,
                }
            )
    return rows


def random_angles(samples: int, depth: int, n_qubits: int, seed: int = 0) -> torch.Tensor:
    """(samples, depth, n_qubits) angles uniform in [−π, π), float64, one stream per (N, L).

    >>> random_angles(3, 2, 4).shape
    torch.Size([3, 2, 4])
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + n_qubits * 1_009 + depth)
    uniform = torch.rand(samples, depth, n_qubits, generator=generator, dtype=torch.float64)
    return (2 * uniform - 1) * math.pi  # (S, L, N)


def cost_gradients(
    angles: torch.Tensor, cost: str = "local", config: QPAConfig | None = None, seed: int = 0
) -> torch.Tensor:
    """∂C/∂θ for every angle set: (samples, depth, n_qubits) in, the same shape out (float64).

    Noiseless circuit costs run all samples at once (`batched_probs`); the others run the
    model of `make_circuit` or `QPAGenerator` once per sample.
    """
    _check_cost(cost)
    if not isinstance(angles, torch.Tensor) or angles.dim() != 3 or 0 in angles.shape:
        shape = tuple(angles.shape) if isinstance(angles, torch.Tensor) else type(angles).__name__
        raise ValueError(f"`angles` must have shape (samples, depth, n_qubits), got {shape}.")
    samples, depth, n_qubits = angles.shape
    config = (config or QPAConfig()).replace(n_qubits=n_qubits, depth=depth, shots=0)
    if cost == "generator":
        return _one_by_one(angles, *_generator_cost(config, seed))
    weights = _observable(cost, n_qubits)  # (2^N,)
    if config.noise > 0:
        circuit = make_circuit(n_qubits, config).double()
        return _one_by_one(angles, circuit, lambda: circuit() @ weights)
    batch = max(1, _BATCH_ENTRIES // (2**n_qubits * depth))  # bounds the saved states
    grads = []
    for part in angles.split(batch):
        part = part.detach().double().requires_grad_()  # (S', L, N)
        probs = batched_probs(part, config.entangler)  # (S', 2^N)
        grads.append(torch.autograd.grad((probs @ weights).sum(), part)[0])
    return torch.cat(grads)  # (S, L, N)


def batched_probs(angles: torch.Tensor, entangler: str = "ladder") -> torch.Tensor:
    """`circuit_probs` of many angle sets at once, (S, depth, N) → (S, 2**N), plain autograd.

    The same group matrices as `qpa.quantum.statevector`, applied with batched GEMMs.

    >>> angles = torch.zeros(5, 3, 2, dtype=torch.float64)
    >>> angles[:, 0, 0] = torch.pi / 2  # five Bell pairs
    >>> batched_probs(angles, "ladder")[:, 3]
    tensor([0.5000, 0.5000, 0.5000, 0.5000, 0.5000], dtype=torch.float64)
    """
    samples, depth, n_qubits = angles.shape
    plan = make_plan(n_qubits, entangler, angles.device, angles.dtype, _BATCH_GROUP)
    flat = group_matrices(angles.reshape(samples * depth, n_qubits), plan)  # (S·L, d, d) each
    matrices = [m.view(samples, depth, *m.shape[1:]) for m in flat]  # (S, L, d, d) each
    state = angles.new_zeros(samples, 2**n_qubits)  # (S, 2^N)
    state[:, 0] = 1  # |0…0⟩
    for layer in range(depth):
        for matrix in matrices:  # K·ψ per group, moving its qubits last, as `apply_groups` does
            rows = state.view(samples, matrix.shape[-1], -1).mT  # (S, rest, d)
            state = torch.bmm(rows, matrix[:, layer])  # (S, rest, d)
        state = state.reshape(samples, -1)  # (S, 2^N)
        if not plan.folded:
            state = state.index_select(1, plan.source)  # the CNOTs
    return state.square()


def _observable(cost: str, n_qubits: int) -> torch.Tensor:
    """The diagonal w of the cost's observable, C = w·p, float64 (2^N,)."""
    index = torch.arange(2**n_qubits)  # (2^N,)
    if cost == "local":  # Z on qubit 0, the most significant bit: +1 on the first half
        return 1.0 - 2.0 * (index >> (n_qubits - 1)).double()
    return (index == 0).double()  # picks P(|0…0⟩)


def _one_by_one(angles: torch.Tensor, circuit: torch.nn.Module, loss: Callable) -> torch.Tensor:
    """∂loss/∂circuit.angles at each angle set in turn, (S, L, N) float64."""
    grads = []
    for theta in angles:
        with torch.no_grad():
            circuit.angles.copy_(theta)
        grads.append(torch.autograd.grad(loss(), circuit.angles)[0].double())  # (L, N)
    return torch.stack(grads)


def _generator_cost(config: QPAConfig, seed: int) -> tuple[torch.nn.Module, Callable]:
    """A QPA generator with every basis state a chunk, and C = mean((v − t)²)."""
    from qpa.generator.qpa_generator import QPAGenerator

    n_values = 2**config.n_qubits * config.chunk_size
    with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's stream
        torch.manual_seed(seed)
        generator = QPAGenerator(n_values, config)
        target = torch.randn(n_values)  # (M,)
    generator.requires_grad_(False)
    generator.circuit.angles.requires_grad_(True)
    return generator.circuit, lambda: (generator() - target).square().mean()


def fit_decay(rows: list[dict]) -> list[dict]:
    """Per (cost, depth) with ≥ 2 qubit counts: the least-squares fit log₂ variance = a + b·N.

    Returns {cost, depth, qubits, log2_slope: b, factor_per_qubit: 2^b}; a factor of 0.25
    means the variance falls 4× per added qubit (exponential decay, a barren plateau).
    """
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        if row["variance"] > 0:
            groups.setdefault((row["cost"], row["depth"]), []).append(row)
    fits = []
    for (cost, depth), group in groups.items():
        n = torch.tensor([float(r["n_qubits"]) for r in group], dtype=torch.float64)
        if len(set(n.tolist())) < 2:
            continue
        y = torch.tensor([math.log2(r["variance"]) for r in group], dtype=torch.float64)
        slope = ((n - n.mean()) * (y - y.mean())).sum() / (n - n.mean()).square().sum()
        fits.append(
            {
                "cost": cost,
                "depth": depth,
                "qubits": [r["n_qubits"] for r in group],
                "log2_slope": slope.item(),
                "factor_per_qubit": 2 ** slope.item(),
            }
        )
    return fits


def _counts(name: str, value: Sequence[int] | str, high: int) -> list[int]:
    """Whole numbers in [1, high] from a list or comma-separated text, duplicates removed."""
    if isinstance(value, str):
        items = value.split(",")
    else:
        items = list(value) if isinstance(value, Sequence) else [value]
    numbers = [_count(name, item, 1, high, value) for item in items if str(item).strip()]
    if not numbers:
        raise ValueError(f"`{name}` = {value!r} is empty; give at least one, e.g. 2,4,6.")
    return list(dict.fromkeys(numbers))


def _count(name: str, item: object, low: int, high: int, shown: object = None) -> int:
    """`item` as a whole number in [low, high] (text and integral floats too), else ValueError."""
    text = str(item).strip()
    number = float(text) if text.lstrip("-").replace(".", "", 1).isdigit() else math.nan
    if isinstance(item, bool) or not number.is_integer() or not low <= number <= high:
        what = "a whole number" if shown is None else "whole numbers"
        shown = item if shown is None else shown
        raise ValueError(f"`{name}` = {shown!r} must be {what} in {low}…{high}.")
    return int(number)


def _check_cost(cost: str) -> None:
    if cost not in COSTS:
        raise ValueError(f"`cost` = {cost!r} is not one of: {', '.join(COSTS)}.")
