"""Benchmark: the noisy circuit (`qpa.quantum.noise`, density matrix) against PennyLane default.mixed.

Forward+backward of Σ w·probs for the ladder circuit with depolarising noise p after every
block, width by width: ours in float32 (what training uses) and float64, PennyLane's
default.mixed (backprop, float64), and the noiseless statevector for scale. Best time of several
runs after a warm-up, one torch thread by default; PennyLane is skipped after a width whose
measurement took over --pennylane-limit-s. Not collected by pytest.

    PYTHONPATH=.:tests python tests/bench/bench_noise.py --min-qubits 2 --max-qubits 10 --depth 8
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from bench_circuit import add_arguments, time_step
from test_noise import pennylane_noisy_probs

from qpa.quantum.noise import noisy_probs
from qpa.quantum.statevector import circuit_probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.set_defaults(min_qubits=2, max_qubits=10)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    noisy = functools.partial(noisy_probs, noise=args.noise)
    print(f"depth {args.depth}, noise {args.noise:g}, {torch.get_num_threads()} torch threads")
    print(f"{'N':>3} {'pure f32':>10} {'noisy f32':>10} {'noisy f64':>10} {'PennyLane':>10}")
    pennylane_on = True
    for n_qubits in range(args.min_qubits, args.max_qubits + 1):
        generator = torch.Generator().manual_seed(n_qubits)
        angles = torch.rand(args.depth, n_qubits, generator=generator, dtype=torch.float64) * 6 - 3
        weights = torch.randn(2**n_qubits, generator=generator, dtype=torch.float64)
        times = [
            time_step(circuit_probs, angles.float(), weights.float(), args),
            time_step(noisy, angles.float(), weights.float(), args),
            time_step(noisy, angles, weights, args),
        ]
        row = f"{n_qubits:>3}" + "".join(f" {t * 1e3:>7.2f} ms" for t in times)
        if pennylane_on:
            start = time.perf_counter()
            reference = pennylane_noisy_probs(n_qubits, "ladder", args.noise)
            theirs = time_step(reference, angles, weights, args)
            pennylane_on = time.perf_counter() - start < args.pennylane_limit_s
            row += f" {theirs * 1e3:>7.1f} ms ({theirs / times[2]:.0f}× ours f64)"
        print(row, flush=True)


if __name__ == "__main__":
    main()
