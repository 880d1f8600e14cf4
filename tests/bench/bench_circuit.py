"""Benchmark: forward+backward time of `qpa.quantum.statevector.circuit_probs` against PennyLane.

Both sides run in this one process, width by width, on the same loss Σ w·probs of the ladder
circuit: ours in float32 (what training uses) and float64, PennyLane's default.qubit with
interface="torch", diff_method="backprop" and float64 angles. Each time is the best of several
runs after a warm-up. PennyLane is skipped for the widths after one whose measurement took over
--pennylane-limit-s. One torch thread by default: on a shared machine, timings with more
threads mostly measure waiting for the others. Not collected by pytest.

    PYTHONPATH=. python tests/bench/bench_circuit.py --min-qubits 4 --max-qubits 18 --depth 8
"""

import argparse
import os
import platform
import time

import pennylane as qml
import torch

from qpa.quantum.statevector import circuit_probs
from tests.pennylane_reference import pennylane_probs


def time_step(probs_fn, angles: torch.Tensor, weights: torch.Tensor, args) -> float:
    """Best wall time of one forward+backward, in seconds, after one warm-up run."""
    angles = angles.detach().clone().requires_grad_()

    def step() -> float:
        start = time.perf_counter()
        angles.grad = None
        (weights * probs_fn(angles)).sum().backward()
        return time.perf_counter() - start

    times = [step()]  # warm-up: builds plans, caches, allocations
    spent = 0.0
    while len(times) <= args.repeats and (len(times) <= 3 or spent < args.budget_s):
        times.append(step())
        spent += times[-1]
    return min(times[1:])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options (bench_generator.py reuses them for the same table)."""
    parser.add_argument("--min-qubits", type=int, default=4)
    parser.add_argument("--max-qubits", type=int, default=18)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20, help="best of this many runs")
    parser.add_argument("--budget-s", type=float, default=2.0, help="stop repeating after this")
    parser.add_argument("--pennylane-limit-s", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads; 0: default")


def table(args: argparse.Namespace) -> None:
    """Print one row per width: ours in float32 and float64, PennyLane, and the ratios."""
    print(
        f"torch {torch.__version__}, pennylane {qml.__version__}, {platform.processor() or 'cpu'}, "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"load average {os.getloadavg()[0]:.1f}; depth {args.depth}; forward+backward, best time"
    )
    print(
        f"{'N':>3} {'ours f32':>11} {'ours f64':>11} {'PennyLane':>11} {'PL/f64':>8} {'PL/f32':>8}"
    )
    pennylane_on = True
    for n_qubits in range(args.min_qubits, args.max_qubits + 1):
        generator = torch.Generator().manual_seed(n_qubits)
        angles = torch.rand(args.depth, n_qubits, generator=generator, dtype=torch.float64) * 6 - 3
        weights = torch.randn(2**n_qubits, generator=generator, dtype=torch.float64)
        ours32 = time_step(circuit_probs, angles.float(), weights.float(), args)
        ours64 = time_step(circuit_probs, angles, weights, args)
        row = f"{n_qubits:>3} {ours32 * 1e3:>8.3f} ms {ours64 * 1e3:>8.3f} ms"
        if pennylane_on:
            start = time.perf_counter()
            theirs = time_step(pennylane_probs(n_qubits), angles, weights, args)
            pennylane_on = time.perf_counter() - start < args.pennylane_limit_s
            row += f" {theirs * 1e3:>8.1f} ms {theirs / ours64:>7.0f}x {theirs / ours32:>7.0f}x"
        else:
            row += f" {'skipped':>11}"
        print(row, flush=True)
    if not pennylane_on:
        print(
            f"PennyLane skipped after its runs took over {args.pennylane_limit_s:.0f} s at one width."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    table(args)


if __name__ == "__main__":
    main()
