"""QPA generation cost: the whole generator against the mapping MLP alone, and against PennyLane.

Part 1, the paper's configuration: GPT-2 small lm_head, LoRA r = 4 (M = 204,100), chunk 2048,
L = 8 → N = 7, 100 chunks. Forward+backward of the loss Σ v² over the generated vector v, three
ways, interleaved round by round in this one process (medians): the generator as it is
(circuit → post-processing → mapping MLP → centred vector), the same generator with the circuit
as a PennyLane default.qubit QNode (backprop), and the mapping MLP alone on fixed rows (the
floor: what generation costs without the quantum part). Part 2, the circuit alone against
PennyLane for N = 4 … 18 (the table of bench_circuit.py). One torch thread by default: these are
sub-millisecond ops, which extra threads only slow down on a shared machine.

    PYTHONPATH=. python tests/bench/bench_generator.py [--rounds 300] [--max-qubits 18]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_circuit import add_arguments, pennylane_probs, table

from qpa.config import QPAConfig
from qpa.generator.mapping import postprocess
from qpa.generator.qpa_generator import QPAGenerator, centered_output
from qpa.quantum.statevector import circuit_probs

M, CONFIG = 204_100, QPAConfig(chunk_size=2048, depth=8)


def paths(gen: QPAGenerator) -> dict:
    """name → one forward+backward of Σ v², for each way of generating v."""
    c, circuit = CONFIG, pennylane_probs(gen.n_qubits)
    rows = torch.randn(gen.n_chunks, gen.n_qubits + 1)  # (n_chunks, N+1) fixed MLP input

    def ours():
        gen.zero_grad(set_to_none=True)
        gen().square().sum().backward()

    def with_pennylane():
        gen.zero_grad(set_to_none=True)
        probs = circuit(gen.circuit.angles).float()  # (2^N,)
        x = postprocess(probs, c.gamma, c.beta, c.alpha)[: gen.n_chunks]  # (n_chunks,)
        features = gen.mapping.body(torch.cat([gen.bits, x.unsqueeze(1)], dim=1))
        centered_output(features, gen.mapping.last, M).square().sum().backward()

    def mlp_alone():
        gen.zero_grad(set_to_none=True)
        gen.mapping(rows).reshape(-1)[:M].square().sum().backward()

    return {
        "qpa generator (qpa.circuit)": ours,
        "generator, PennyLane circuit": with_pennylane,
        "mapping MLP alone (floor)": mlp_alone,
    }


def interleaved(fns: dict, rounds: int, warmup: int = 5) -> dict:
    """Median seconds of each function, timed one after another in every round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            tic = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(t) for name, t in times.items()}


def agreement(gen: QPAGenerator) -> str:
    """max |Δp| and max |Δ∂θ of Σ w·p| against PennyLane (float64), ours in float64 and float32."""
    angles = gen.circuit.angles.detach().double().requires_grad_()
    weights = torch.randn(2**gen.n_qubits, dtype=torch.float64)
    results = {}
    for name, fn, dtype in (
        ("PennyLane", pennylane_probs(gen.n_qubits), torch.float64),
        ("float64", circuit_probs, torch.float64),
        ("float32", circuit_probs, torch.float32),
    ):
        p = fn(angles.to(dtype)).double()  # (2^N,)
        (grad,) = torch.autograd.grad((weights * p).sum(), angles)
        results[name] = (p.detach(), grad)
    ref_p, ref_g = results.pop("PennyLane")
    return "; ".join(
        f"{name} |Δp| {(p - ref_p).abs().max():.1e}, |Δ∂θ| {(g - ref_g).abs().max():.1e}"
        for name, (p, g) in results.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--rounds", type=int, default=300, help="interleaved rounds, part 1")
    parser.add_argument("--skip-table", action="store_true", help="part 1 only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = QPAGenerator(M, CONFIG)
    med = interleaved(paths(gen), args.rounds)
    errors = agreement(gen)
    c = CONFIG
    print(
        f"QPA generator fwd+bwd, GPT-2 lm_head r=4: M={M:,}, N={gen.n_qubits}, L={c.depth}, "
        f"chunk={c.chunk_size}; torch threads {torch.get_num_threads()}, {args.rounds} rounds"
    )
    print(f"ours vs PennyLane (float64), max over entries: {errors}")
    print(f"{'path':<34}{'median ms':>10}")
    for name, t in med.items():
        print(f"{name:<34}{t * 1e3:>10.3f}")
    ours, pl, mlp = med.values()
    print(f"generator / MLP alone: {ours / mlp:.2f}×; PennyLane generator / ours: {pl / ours:.2f}×")
    if not args.skip_table:
        print()
        table(args)


if __name__ == "__main__":
    main()
