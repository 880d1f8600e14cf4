"""Training-step time on the default model's lm_head: QPA vs LoRA, cached head vs full forward.

All four sessions share the model, corpus, rank, batch and seed, and are timed in one process,
interleaved round by round so machine noise hits them alike. Prints medians and ratios.

    python tests/bench/bench_train_step.py [--model smollm2] [--steps 20] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from qpa.config import AdapterConfig, ModelConfig, RunConfig, TrainConfig
from qpa.session import prepare
from qpa.train import features_dir, make_optimizer, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    sessions = {}
    for method in ("lora", "qpa-lora"):
        for cached in (True, False):
            config = RunConfig(
                model=ModelConfig(model=args.model),
                adapter=AdapterConfig(method=method),
                train=TrainConfig(batch_size=args.batch_size, cache_backbone=cached, steps=1000),
            ).resolved()
            torch.manual_seed(0)
            session = prepare(config, cache_dir=features_dir())
            sessions[(method, cached)] = (session, make_optimizer(session))
    times: dict = {key: [] for key in sessions}
    for step in range(args.steps + 2):  # two warm-up rounds
        for key, (session, optimizer) in sessions.items():
            seconds = train_step(session, optimizer, step)["seconds"]
            if step >= 2:
                times[key].append(seconds)
    med = {key: statistics.median(v) for key, v in times.items()}
    print(
        f"model {args.model}, lm_head, r=4, batch {args.batch_size} examples, {args.steps} steps each, torch threads {torch.get_num_threads()}"
    )
    print(f"{'method':<10}{'path':<14}{'median step ms':>16}")
    for (method, cached), t in med.items():
        print(f"{method:<10}{'cached head' if cached else 'full forward':<14}{t * 1e3:>16.1f}")
    print(
        f"QPA step / LoRA step (cached head): {med[('qpa-lora', True)] / med[('lora', True)]:.3f}"
    )
    print(
        f"QPA step / LoRA step (full forward): {med[('qpa-lora', False)] / med[('lora', False)]:.3f}"
    )
    print(
        f"cached-head step / full-forward step (LoRA): {med[('lora', True)] / med[('lora', False)]:.3f}"
    )


if __name__ == "__main__":
    main()
