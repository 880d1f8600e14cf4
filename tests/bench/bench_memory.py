"""Memory of a default training run: peak RSS, and RSS sampled every 100 steps (no growth).

Trains the default config (SmolLM2 lm_head, QPA-LoRA, cached head) for `--steps` steps through
`qpa.training.loop.train`, validating only at the start and the end, and reads the process's RSS and
peak RSS (VmRSS, VmHWM in /proc/self/status) every `--every` steps. Prints the series, the
growth from the first sample and over the second half, and the peak. The cached hidden rows
are memory-mapped (221 MiB for the default corpus), so RSS rises during the first epoch
(about 230 steps) as batches touch them for the first time, then stays flat. `--naive` switches the fused head loss
off (full logits + cross-entropy), to compare peaks: run it as its own process.

    PYTHONPATH=. python tests/bench/bench_memory.py [--steps 1000] [--every 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from bench_train_step import naive_head

from qpa.config import AdapterConfig, RunConfig, TrainConfig
from qpa.training.loop import train


def memory_mib() -> tuple[float, float]:
    """(RSS, peak RSS) of this process in MiB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class Sampler:
    """A training callback: (step, RSS, peak RSS, seconds per step since the last sample)."""

    def __init__(self, every: int):
        self.every, self.samples = every, []
        self.last_step, self.last_time = 0, time.perf_counter()

    def __call__(self, event: dict) -> None:
        if event["event"] == "eval" and event["step"] == 0:  # the clock starts after validation
            self.last_time = time.perf_counter()
        if event["event"] != "step" or event["step"] % self.every:
            return
        now, step = time.perf_counter(), event["step"]
        per_step = (now - self.last_time) / (step - self.last_step)
        self.samples.append((step, *memory_mib(), per_step))
        self.last_step, self.last_time = step, now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--method", default="qpa-lora", choices=("qpa-lora", "lora"))
    parser.add_argument("--naive", action="store_true", help="fused head loss off")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = RunConfig(
        adapter=AdapterConfig(method=args.method),
        train=TrainConfig(steps=args.steps, eval_every=args.steps),  # validate at 0 and the end
    )
    sampler = Sampler(args.every)
    with naive_head() if args.naive else contextlib.nullcontext():
        result = train(config, callbacks=[sampler])
    samples, (_, peak) = sampler.samples, memory_mib()
    path = "naive peft head" if args.naive else "fused head loss"
    print(
        f"{args.method}, default config, {args.steps} steps, {path}, torch threads "
        f"{torch.get_num_threads()}; final val perplexity {result['val_perplexity']:.3f}"
    )
    print(f"{'step':>6}{'RSS MiB':>10}{'peak MiB':>10}{'s/step':>8}")
    for step, rss, high, per_step in samples:
        print(f"{step:>6}{rss:>10.1f}{high:>10.1f}{per_step:>8.3f}")
    first, middle, last = samples[0], samples[len(samples) // 2], samples[-1]
    print(
        f"RSS growth from step {first[0]} to {last[0]}: {last[1] - first[1]:+.1f} MiB; "
        f"second half, step {middle[0]} to {last[0]}: {last[1] - middle[1]:+.1f} MiB; "
        f"peak RSS of the run (validation included) {peak:.1f} MiB"
    )


if __name__ == "__main__":
    main()
