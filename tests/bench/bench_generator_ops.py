"""How many operations one QPA generation launches, forward + backward: the count that decides
its cost on a GPU, where each is a kernel launch of a few microseconds on tiny tensors.

Counted with the torch profiler for the paper's GPT-2 generator (N = 7, L = 8, chunk 2048, the
official mapping MLP; M = 204,100) and the default `qpa-shallow-gelu` one: aten operators on the
CPU (every `aten::` event, nested ones included: the CPU proxy), and CUDA kernels when a GPU is
there (`--device cuda`). The issue-20 target (QPA/LoRA ≤ 1.05 per step on the reproduce
protocol) needs these fused or replayed as one CUDA graph; this script gives the count to beat.

    PYTHONPATH=. python tests/bench/bench_generator_ops.py [--device cuda]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from qpa.config import PAPER_MAPPING, QPAConfig
from qpa.generator.qpa_generator import QPAGenerator

M = 204_100  # GPT-2 small's lm_head at r = 4: 4 × (50,257 + 768)
SHAPES = {"paper (qpa)": QPAConfig(chunk_size=2048, depth=8, **PAPER_MAPPING),
          "qpa-shallow-gelu (default)": QPAConfig(chunk_size=2048, depth=8)}  # fmt: skip


def count(gen: QPAGenerator, device: torch.device) -> dict[str, int]:
    """Operators (and kernels, on CUDA) of one forward + backward of Σ v², after a warm-up."""
    for _ in range(3):
        gen.zero_grad(set_to_none=True)
        gen().square().sum().backward()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        gen.zero_grad(set_to_none=True)
        gen().square().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.events()
    out = {"aten ops": sum(e.name.startswith("aten::") for e in events)}
    if device.type == "cuda":
        out["CUDA kernels"] = sum(e.device_type == torch.autograd.DeviceType.CUDA for e in events)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    device = torch.device(args.device)
    for name, config in SHAPES.items():
        gen = QPAGenerator(M, config).to(device)
        counts = ", ".join(f"{n} {c:,}" for n, c in count(gen, device).items())
        print(f"{name}: N = {gen.n_qubits}, L = {config.depth}, one generation fwd+bwd: {counts}")


if __name__ == "__main__":
    main()
