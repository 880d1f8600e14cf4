"""Forward+backward time of QPA parameter generation: our simulator vs PennyLane default.qubit.

GPT-2 small lm_head, LoRA r = 4 (M = 204,100), chunk 2048, L = 8 → N = 7, 100 chunks: the
paper's configuration. The whole generator (circuit → post-processing → mapping MLP → vector)
runs with the circuit from `qpa.circuit` and, in the same process, with the circuit as a
PennyLane QNode (backprop); the mapping MLP alone is timed as the floor. Prints ratios.

    python tests/bench/bench_generator.py
"""

from __future__ import annotations

import statistics
import time

import pennylane as qml
import torch

from qpa.config import QPAConfig
from qpa.generator import QPAGenerator
from qpa.mapping import postprocess

M, CONFIG = 204_100, QPAConfig(chunk_size=2048, depth=8)


def best_of(fn, repeat: int = 30, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def pennylane_probs(n_qubits: int):
    dev = qml.device("default.qubit", wires=n_qubits)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def probs(angles):
        for layer in angles:
            for k in range(n_qubits):
                qml.RY(layer[k], wires=k)
            for k in range(n_qubits - 1):
                qml.CNOT(wires=[k, k + 1])
        return qml.probs(wires=range(n_qubits))

    return probs


def main() -> None:
    torch.manual_seed(0)
    gen = QPAGenerator(M, CONFIG)
    circuit = pennylane_probs(gen.n_qubits)
    c = CONFIG

    def ours():
        gen.zero_grad(set_to_none=True)
        gen().square().sum().backward()

    def with_pennylane():
        gen.zero_grad(set_to_none=True)
        probs = circuit(gen.circuit.angles).float()  # (2^N,)
        x = postprocess(probs, c.gamma, c.beta, c.alpha)[: gen.n_chunks]
        rows = torch.cat([gen.bits, x.unsqueeze(1)], dim=1)
        gen.mapping(rows).reshape(-1)[:M].square().sum().backward()

    rows = torch.randn(gen.n_chunks, gen.n_qubits + 1)

    def mlp_only():
        gen.zero_grad(set_to_none=True)
        gen.mapping(rows).reshape(-1)[:M].square().sum().backward()

    with torch.no_grad():
        p_ours = gen.circuit()
        p_ref = circuit(gen.circuit.angles.double())
    err = (p_ours.double() - p_ref).abs().max().item()
    t_ours, t_pl, t_mlp = best_of(ours), best_of(with_pennylane), best_of(mlp_only)
    print(
        f"QPA generator fwd+bwd, GPT-2 lm_head r=4: M={M:,}, N={gen.n_qubits}, L={c.depth}, chunk={c.chunk_size}"
    )
    print(f"torch threads: {torch.get_num_threads()}; max |p_ours − p_pennylane| = {err:.2e}")
    print(f"{'path':<34}{'median ms':>10}")
    print(f"{'qpa.circuit simulator':<34}{t_ours * 1e3:>10.2f}")
    print(f"{'PennyLane default.qubit (backprop)':<34}{t_pl * 1e3:>10.2f}")
    print(f"{'mapping MLP alone (floor)':<34}{t_mlp * 1e3:>10.2f}")
    print(f"ratio PennyLane / ours: {t_pl / t_ours:.2f}×; ours / MLP alone: {t_ours / t_mlp:.2f}×")


if __name__ == "__main__":
    main()
