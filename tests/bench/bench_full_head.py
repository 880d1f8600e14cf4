"""Evaluation on the reproduce protocol's full forward (lm_head adapted, backbone not cached):
the fused head loss against the plain (rows × vocabulary) logits, time and peak memory.

A random GPT-2-shaped model (vocabulary 50,257, d = 768; `--layers` blocks, 12 in GPT-2 small)
is saved with the tiny tokenizer to a folder; the plain-text lines are padded with eos to 512
tokens and the padding counted, as in `python -m qpa reproduce gpt2-lora`. Each variant runs in
its own process (peak RSS is per process): `evaluate_split` over the validation lines in
batches of 32 (what training's evaluations do) and `batch_mean_perplexity` in batches of 2 (the
test split after training). "plain" switches the fused path off, as before issue 20.

    PYTHONPATH=. python tests/bench/bench_full_head.py [--layers 12] [--lines 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_model(folder: Path, layers: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from qpa.models.tiny_tokenizer import tiny_tokenizer

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=layers)).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)


def measure(folder: Path, corpus: Path, variant: str) -> dict:
    import torch

    from qpa.studies.reproduce import batch_mean_perplexity, plan_recipe
    from qpa.training import session as session_module
    from qpa.training.loop import evaluate_split

    overrides = {"model.model": str(folder), "data.corpus": str(corpus),
                 "data.eval_corpus": str(corpus), "train.device": "cpu"}  # fmt: skip
    session = session_module.prepare(plan_recipe("gpt2-lora", overrides=overrides).config)
    if variant == "plain":
        session.head_alone = False  # the full forward's logits, then cross-entropy
    torch.set_num_threads(torch.get_num_threads())
    tic = time.perf_counter()
    full = evaluate_split(session, "val")
    mid = time.perf_counter()
    test = batch_mean_perplexity(session, "val")
    end = time.perf_counter()
    return {"variant": variant, "evaluate_split_s": mid - tic, "batches_of_2_s": end - mid,
            "loss": full["loss"], "perplexity": test["perplexity"], "rows": full["tokens"],
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--lines", type=int, default=64)
    parser.add_argument("--variant", choices=("fused", "plain"))
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.variant:  # one measurement, in this process
        folder = Path(args.folder)
        print(json.dumps(measure(folder / "model", folder / "lines.txt", args.variant)))
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-full-head-"))
    build_model(folder / "model", args.layers)
    text = "\n".join(f"Line {i}: a sentence of plain text about models, data and time." for i in
                     range(args.lines))  # fmt: skip
    (folder / "lines.txt").write_text(text + "\n")
    rows = []
    for variant in ("fused", "plain"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--folder",
                              str(folder)], capture_output=True, text=True, check=True)  # fmt: skip
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in rows:
        print(f"{r['variant']:>5}: evaluate_split {r['evaluate_split_s']:.1f} s, batches of 2 "
              f"{r['batches_of_2_s']:.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB, "
              f"{r['rows']:,} rows, loss {r['loss']:.6f}")  # fmt: skip
    fused, plain = rows
    print(f"plain / fused: evaluate_split {plain['evaluate_split_s'] / fused['evaluate_split_s']:.2f}×, "
          f"batches of 2 {plain['batches_of_2_s'] / fused['batches_of_2_s']:.2f}×; |Δloss| "
          f"{abs(plain['loss'] - fused['loss']):.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
