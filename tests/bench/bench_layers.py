"""One generator for many layers or one per layer: LoRA vs QPA shared vs QPA per-layer.

Adapts the attention projections of the last layers (a full forward pass every step), with
each QPA shape chosen for about the same parameter budget; prints params, % of LoRA's,
validation perplexity at step 0 and at the end, and wall time.

    python tests/bench/bench_layers.py --steps 100 --seed 0
"""

from __future__ import annotations

import argparse

from runs_table import print_table, train_rows

from qpa.config import AdapterConfig, QPAConfig, RunConfig, TrainConfig

TARGETS = r"model\.layers\.2[6-9]\.self_attn\.(q|v)_proj"
SHAPES = {  # both about 51% of LoRA's 30,720 parameters on the default model
    "qpa-shared": QPAConfig(layers="shared", chunk_size=512, hidden_sizes=(28, 28)),
    "qpa-per-layer": QPAConfig(layers="per-layer", chunk_size=128, hidden_sizes=(12, 12)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--targets", default=TARGETS)
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args()
    train = TrainConfig(steps=args.steps, seed=args.seed, eval_every=args.eval_every)
    lora = AdapterConfig(method="lora", target_modules=(args.targets,))
    configs = {"lora": RunConfig(adapter=lora, train=train)}
    for name, qpa in SHAPES.items():
        adapter = lora.replace(method="qpa-lora")
        configs[name] = RunConfig(adapter=adapter, qpa=qpa, train=train)
    rows = train_rows(configs, args.runs_dir, f"layers-s{args.seed}")
    print(f"\nsmollm2 + chatterbot, {args.targets}, r=4, {args.steps} steps, seed {args.seed}")
    print_table(rows, "lora")


if __name__ == "__main__":
    main()
