"""Base model vs LoRA vs QPA-LoRA on the default setup: validation perplexity over seeds.

Each training is a real run directory (under --runs-dir), so curves can be opened in the app.
Prints a table of mean ± std over the seeds: trainable parameters, % of LoRA, validation
perplexity on all tokens and on assistant tokens, and wall time.

    python tests/bench/compare_methods.py --seeds 0 1 2 --steps 300
"""

from __future__ import annotations

import argparse
import statistics
import time

from qpa.config import AdapterConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig
from qpa.runs import create_run
from qpa.train import evaluate, train


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args()
    base_config = RunConfig(
        model=ModelConfig(model=args.model),
        qpa=QPAConfig(chunk_size=args.chunk_size),
        train=TrainConfig(steps=args.steps),
    )
    tic = time.time()
    base = evaluate(base_config)
    rows = [
        (
            "base model",
            [0],
            [base["perplexity"]],
            [base.get("assistant_perplexity", float("nan"))],
            [time.time() - tic],
        )
    ]
    for method in ("lora", "qpa-lora"):
        params, ppl, assistant, wall = [], [], [], []
        for seed in args.seeds:
            config = base_config.replace(
                adapter=AdapterConfig(method=method),
                train=base_config.train.replace(seed=seed),
            ).resolved()
            result = train(config, create_run(config, args.runs_dir))
            params.append(result["trainable_params"])
            ppl.append(result["val_perplexity"])
            assistant.append(result.get("val_assistant_perplexity", float("nan")))
            wall.append(result["wall_time"])
            print(
                f"{method} seed {seed}: {result['val_perplexity']:.4f} / {assistant[-1]:.4f} in {wall[-1]:.0f} s",
                flush=True,
            )
        rows.append((f"{method} (lr {config.train.lr:g})", params, ppl, assistant, wall))
    lora_params = rows[1][1][0]
    print(
        f"\n{args.model}, lm_head, r=4, chunk {args.chunk_size}, {args.steps} steps, seeds {args.seeds}"
    )
    print(
        "| method | trainable params | % of LoRA | val PPL (all tokens) | val PPL (assistant tokens) | wall time (s) |"
    )
    print("|---|---|---|---|---|---|")
    for name, params, ppl, assistant, wall in rows:
        print(
            f"| {name} | {params[0]:,} | {params[0] / lora_params:.2%} | {mean_std(ppl)} | {mean_std(assistant)} | {statistics.mean(wall):.0f} |"
        )


if __name__ == "__main__":
    main()
