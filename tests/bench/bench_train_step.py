"""Training-step time on the default model's lm_head: fused vs naive head, QPA vs LoRA.

On the cached head, `split_loss` uses the fused head loss (`qpa.adapters.head_loss`); the naive step is
the same `train_step` with the fused path switched off, so peft's LoRA Linear computes the full
(rows × vocabulary) logits and `F.cross_entropy` runs on them. A bare matmul of the head's
size, (rows × d)·(d × V) into a reused output, is timed alongside as the machine's limit. All
variants share the model, corpus, rank, batch and seed and are timed in one process,
interleaved round by round so machine noise hits them alike; times are medians, ratios are
medians of per-round ratios. `--full-forward` adds the uncached path (the whole backbone: slow).

    python tests/bench/bench_train_step.py [--steps 20] [--batch-size 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

import qpa.training.session
from qpa.config import AdapterConfig, ModelConfig, RunConfig, TrainConfig
from qpa.training.loop import batch_examples, features_dir, make_optimizer, train_step
from qpa.training.session import output_head, prepare


@contextlib.contextmanager
def naive_head():
    """Switch the fused head loss off: `split_loss` falls back to logits + cross-entropy."""
    fused = qpa.training.session.head_parts
    qpa.training.session.head_parts = lambda head, *_: None
    try:
        yield
    finally:
        qpa.training.session.head_parts = fused


def build(args) -> dict:
    """(label → (session, optimizer, naive)) for every variant timed."""
    variants = {}
    paths = [("fused", True), ("naive", True)] + ([("full", False)] if args.full_forward else [])
    for method in ("lora", "qpa-lora"):
        for path, cached in paths:
            config = RunConfig(
                model=ModelConfig(model=args.model),
                adapter=AdapterConfig(method=method),
                train=TrainConfig(batch_size=args.batch_size, cache_backbone=cached, steps=1000),
            ).resolved()
            torch.manual_seed(0)
            session = prepare(config, cache_dir=features_dir())
            variants[(method, path)] = (session, make_optimizer(session), path == "naive")
    return variants


class BareMatmul:
    """(R, d)·(d, V) on the hidden rows of each step's batch: the head's GEMM and nothing else."""

    def __init__(self, session):
        self.rows, self.cfg = session.rows["train"], session.config.train
        self.weight = output_head(session.model).get_base_layer().weight  # (V, d)
        self.out = torch.empty(0)  # reused, as the fused loss reuses its buffer

    def __call__(self, step: int) -> tuple[float, int]:
        examples = batch_examples(self.rows.n_examples, self.cfg.batch_size, self.cfg.seed, step)
        hidden = self.rows.hidden[self.rows.select(examples)]  # (R, d)
        if self.out.shape[0] < hidden.shape[0]:
            self.out = torch.empty(2 * hidden.shape[0], self.weight.shape[0])
        tic = time.perf_counter()
        torch.mm(hidden, self.weight.t(), out=self.out[: hidden.shape[0]])  # (R, V)
        return time.perf_counter() - tic, hidden.shape[0]


def time_rounds(variants: dict, matmul: BareMatmul, steps: int) -> dict:
    """Per variant (and the bare matmul): (seconds, rows) per step, 2 warm-up rounds.

    Each round runs every variant on the same batch, in reverse order every other round.
    """
    times: dict = {key: [] for key in [*variants, "matmul"]}
    for step in range(steps + 2):
        order = list(variants.items())
        for key, (session, optimizer, naive) in order if step % 2 else order[::-1]:
            with naive_head() if naive else contextlib.nullcontext():
                out = train_step(session, optimizer, step)
            times[key].append((out["seconds"], round(out["tokens_per_s"] * out["seconds"])))
        times["matmul"].append(matmul(step))
    return {key: v[2:] for key, v in times.items()}


def report(times: dict, head_size: tuple[int, int], args) -> None:
    vocab, dim = head_size
    med = {key: statistics.median(s for s, _ in v) for key, v in times.items()}
    rate = {  # GFLOP/s of the head's forward GEMM, 2·R·V·d per step
        key: statistics.median(2 * r * vocab * dim / s / 1e9 for s, r in v)
        for key, v in times.items()
    }
    n_rows = statistics.median(r for _, r in times["matmul"])
    print(
        f"model {args.model}, lm_head {vocab}×{dim}, r=4, batch {args.batch_size} examples "
        f"(median {n_rows:.0f} rows), {args.steps} steps each, torch threads "
        f"{torch.get_num_threads()}"
    )
    names = {"fused": "cached head, fused loss", "naive": "cached head, naive peft"}
    names |= {"full": "full forward", "matmul": "bare matmul (R×d)·(d×V)"}
    print(f"{'method':<10}{'path':<30}{'median step ms':>16}{'GFLOP/s':>10}")
    for key, t in med.items():
        method, path = key if key != "matmul" else ("", "matmul")
        print(f"{method:<10}{names[path]:<30}{t * 1e3:>16.1f}{rate[key]:>10.1f}")
    for method in ("lora", "qpa-lora"):
        naive = paired(times, (method, "naive"), (method, "fused"))
        fused = paired(times, (method, "fused"), "matmul")
        print(
            f"{method}: naive / fused step {naive:.2f}×; fused step / bare matmul {fused:.2f}× "
            f"({rate[(method, 'fused')] / rate['matmul']:.0%} of the matmul's GFLOP/s)"
        )
    for path in ("fused", "naive", "full"):
        if ("lora", path) in med:
            ratio = paired(times, ("qpa-lora", path), ("lora", path))
            print(f"QPA step / LoRA step ({names[path]}): {ratio:.3f}")


def paired(times: dict, top, bottom) -> float:
    """Median over rounds of the ratio of two variants' times in the same round."""
    return statistics.median(
        a / b for (a, _), (b, _) in zip(times[top], times[bottom], strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    parser.add_argument("--full-forward", action="store_true", help="also time the uncached path")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = build(args)
    matmul = BareMatmul(variants[("lora", "fused")][0])
    report(time_rounds(variants, matmul, args.steps), tuple(matmul.weight.shape), args)


if __name__ == "__main__":
    main()
