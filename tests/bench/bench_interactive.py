"""What the app waits for: live parameter counts, the first chat token, merged-adapter speed.

1. `qpa.adapters.counts.count_params` for every preset in `qpa.models.loading.PRESETS`: the call after the first
   (a QPA setting changed, the layout cached) and on rank changes (a new layout: the model is
   rebuilt on the meta device and wrapped by peft). Target ≤ 200 ms each.
2. Time to the first streamed reply piece of `ChatModel.stream` on the default model, greedy,
   after the model is loaded. Target ≤ 1 s.
3. Greedy generation speed (tokens/s, a fixed number of new tokens) of the default model with a
   freshly initialised QPA adapter exported and merged, against the base model on the same
   prompt, in rounds of base, merged, merged, base. Target merged / base ≥ 0.98.

On a shared machine, pass `--threads 1`: with two threads, each of the model's many small
parallel regions waits for the thread the scheduler parked, and a prefill takes seconds.

    PYTHONPATH=. python tests/bench/bench_interactive.py [--rounds 5] [--new-tokens 48] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from qpa.adapters.counts import count_params
from qpa.config import AdapterConfig, QPAConfig
from qpa.constants import DEFAULT_MODEL
from qpa.inference.chat import ChatModel
from qpa.models.loading import PRESETS, load_model

PROMPT = [{"role": "user", "content": "Explain in two sentences what a qubit is."}]
RANKS = (8, 16, 2, 32, 64, 1024)  # rank changes, the last one the largest allowed


def count_ms(name: str, rank: int, qpa: QPAConfig) -> float:
    """Milliseconds of one `count_params` call."""
    tic = time.perf_counter()
    count_params(name, AdapterConfig(rank=rank), qpa)
    return (time.perf_counter() - tic) * 1e3


def bench_counts() -> None:
    qpa = QPAConfig()
    first_ever = count_ms("gpt2-config", 3, qpa)
    print(
        f"count_params: first call in the process (imports transformers, peft): {first_ever:.0f} ms"
    )
    print(
        f"{'preset':<16}{'first':>9}{'next (chunk change)':>21}{'rank change median':>20}{'max':>9}"
    )
    worst = 0.0
    for name in PRESETS:
        first = count_ms(name, 4, qpa)
        changes = [count_ms(name, 4, qpa.replace(chunk_size=c)) for c in (1024, 4096, 512)]
        ranks = [count_ms(name, r, qpa) for r in RANKS]
        worst = max(worst, *changes, *ranks)
        print(
            f"{name:<16}{first:>6.0f} ms{statistics.median(changes):>18.1f} ms"
            f"{statistics.median(ranks):>17.1f} ms{max(ranks):>6.0f} ms"
        )
    print(f"slowest count after a preset's first call: {worst:.0f} ms (target ≤ 200 ms)")


def bench_first_token(chat: ChatModel, rounds: int) -> None:
    times = []
    for _ in range(rounds):
        tic = time.perf_counter()
        stream = chat.stream(PROMPT, max_new_tokens=32, temperature=0)
        next(stream)
        times.append(time.perf_counter() - tic)
        stream.close()
    print(
        f"first streamed reply piece, {DEFAULT_MODEL}, greedy: median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s over {rounds} (target ≤ 1 s)"
    )


def merged_chat(tmp: str) -> ChatModel:
    """The default model with a freshly initialised QPA adapter, exported and merged back."""
    from qpa.adapters.export import export_adapter
    from qpa.adapters.qpa_lora import build_adapter

    torch.manual_seed(0)
    model, qpa = build_adapter(load_model(DEFAULT_MODEL)[0], AdapterConfig(), QPAConfig())
    export_adapter(model, qpa, f"{tmp}/adapter", base_model=DEFAULT_MODEL)
    return ChatModel.load(DEFAULT_MODEL, f"{tmp}/adapter")


def tokens_per_s(chat: ChatModel, new_tokens: int) -> float:
    inputs, _ = chat.encode(PROMPT, new_tokens)
    tic = time.perf_counter()
    with torch.inference_mode():
        out = chat.model.generate(
            **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
        )
    assert out.shape[1] - inputs["input_ids"].shape[1] == new_tokens
    return new_tokens / (time.perf_counter() - tic)


def bench_merged_speed(base: ChatModel, merged: ChatModel, rounds: int, new_tokens: int) -> None:
    """Rounds of base, merged, merged, base (drift cancels); the median of per-round ratios."""
    speeds: dict[str, list[float]] = {"base": [], "merged": []}
    ratios = []
    for chat in (base, merged):
        tokens_per_s(chat, 8)  # warm-up
    for _ in range(rounds):
        b1, m1, m2, b2 = (tokens_per_s(c, new_tokens) for c in (base, merged, merged, base))
        speeds["base"] += [b1, b2]
        speeds["merged"] += [m1, m2]
        ratios.append((m1 + m2) / (b1 + b2))
    med = {k: statistics.median(v) for k, v in speeds.items()}
    print(
        f"greedy generation, {new_tokens} new tokens, {rounds} rounds (base, merged, merged, base): "
        f"base {med['base']:.1f} tok/s, merged QPA adapter {med['merged']:.1f} tok/s; "
        f"merged / base {statistics.median(ratios):.3f} (median per-round ratio; target ≥ 0.98)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}")
    bench_counts()
    tic = time.perf_counter()
    base = ChatModel.load(DEFAULT_MODEL)
    print(f"ChatModel.load({DEFAULT_MODEL!r}): {time.perf_counter() - tic:.2f} s")
    bench_first_token(base, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        merged = merged_chat(tmp)
        bench_merged_speed(base, merged, args.rounds, args.new_tokens)


if __name__ == "__main__":
    main()
