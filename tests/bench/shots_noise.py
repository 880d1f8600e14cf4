"""Finite shots and depolarising noise (paper App. G) on the default QPA setup: val perplexity.

One QPA-LoRA run per setting on SmolLM2-135M-Instruct, lm_head, r = 4, chunk 2048 (N = 7,
L = 8), chatterbot, 300 steps, seed 0: exact probabilities; `shots=S`, probabilities estimated
from S measurements, re-drawn at every generation of the weights, evaluation included (as on a
device; gradients straight-through); `noise=P`, depolarising probability P on every qubit after
each block (exact density matrix). Each run is a run directory PREFIX-SETTING-sSEED under --runs-dir;
a finished one is reused, so the table can be rebuilt without training again. Seconds are the
training loop's wall time (the run's `wall_time`), on a machine possibly shared.

    python tests/bench/shots_noise.py --settings exact,shots=100000,shots=10000,shots=1000,noise=0.01,noise=0.05
"""

from __future__ import annotations

import argparse

from qpa.config import AdapterConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig
from qpa.runs import create_run, open_run
from qpa.train import train

DEFAULT_SETTINGS = "exact,shots=100000,shots=10000,shots=1000,noise=0.01,noise=0.05"


def qpa_options(setting: str) -> dict:
    """``exact`` → {}, ``shots=1000`` → {"shots": 1000}, ``noise=0.05`` → {"noise": 0.05}."""
    if setting == "exact":
        return {}
    key, _, value = setting.partition("=")
    if key == "shots":
        return {"shots": int(value)}
    if key == "noise":
        return {"noise": float(value)}
    raise SystemExit(f"unknown setting {setting!r}: use exact, shots=N or noise=P")


def run_setting(base: RunConfig, setting: str, args: argparse.Namespace) -> dict:
    """The finished run's result, trained now or reused; its `wall_time` is the training's."""
    name = f"{args.prefix}-{setting.replace('=', '')}-s{args.seed}"
    try:
        status = open_run(name, args.runs_dir).status()
        if status["state"] == "done":
            return status["result"]
    except ValueError:
        pass  # no such run yet
    config = base.replace(qpa=base.qpa.replace(**qpa_options(setting)))
    return train(config, create_run(config, args.runs_dir, name=name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--prefix", default="appg")
    args = parser.parse_args()
    base = RunConfig(
        model=ModelConfig(model=args.model),
        adapter=AdapterConfig(method="qpa-lora", rank=4),
        qpa=QPAConfig(chunk_size=2048),
        train=TrainConfig(steps=args.steps, seed=args.seed, loss_on="all"),  # as the README's
    ).resolved()
    rows = []
    for setting in args.settings.split(","):
        result = run_setting(base, setting, args)
        options = qpa_options(setting)
        rows.append((options.get("shots", 0), options.get("noise", 0.0), result))
        print(
            f"{setting}: {result['val_perplexity']:.4f} in {result['wall_time']:.0f} s", flush=True
        )
    print(f"\n{args.model}, QPA-LoRA lm_head r=4, chunk 2048, {args.steps} steps, seed {args.seed}")
    print(
        "| method | shots | noise | val PPL (all tokens) | val PPL (assistant tokens) | seconds |"
    )
    print("|---|---|---|---|---|---|")
    for shots, noise, result in rows:
        assistant = result.get("val_assistant_perplexity", float("nan"))
        print(
            f"| qpa-lora | {f'{shots:,}' if shots else 'exact'} | {noise:g} | "
            f"{result['val_perplexity']:.3f} | {assistant:.3f} | {result['wall_time']:.0f} |"
        )


if __name__ == "__main__":
    main()
