"""DoRA vs QPA-DoRA on the default setup (lm_head), next to LoRA and QPA-LoRA if asked.

Each training is a real run directory; prints params, % of DoRA's, validation perplexity at
step 0 and at the end (all tokens, assistant tokens) and wall time.

    python tests/bench/compare_dora.py --steps 300 --seed 0
"""

from __future__ import annotations

import argparse

from runs_table import print_table, train_rows

from qpa.config import AdapterConfig, RunConfig, TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--magnitudes",
        nargs="+",
        default=["trainable"],
        choices=["trainable", "generated"],
        help="QPA-DoRA magnitude modes to run",
    )
    parser.add_argument("--plain", action="store_true", help="also LoRA and QPA-LoRA (no DoRA)")
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args()
    train = TrainConfig(steps=args.steps, seed=args.seed)
    adapters = {"dora": AdapterConfig(method="lora", use_dora=True)}
    for magnitude in args.magnitudes:
        adapters[f"qpa-dora-{magnitude}"] = AdapterConfig(use_dora=True, dora_magnitude=magnitude)
    if args.plain:
        adapters |= {"lora": AdapterConfig(method="lora"), "qpa": AdapterConfig()}
    configs = {name: RunConfig(adapter=a, train=train) for name, a in adapters.items()}
    rows = train_rows(configs, args.runs_dir, f"dora-s{args.seed}")
    print(f"\nsmollm2 + chatterbot, lm_head, r=4, {args.steps} steps, seed {args.seed}")
    print_table(rows, "dora")


if __name__ == "__main__":
    main()
