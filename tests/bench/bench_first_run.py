"""The first run on a fresh install: how long until the model is ready, the first validation
point, the first training step, and the whole default QPA + LoRA launch; then the backbone-row
cache built the old way against the new way, side by side in this one process.

Part 1 starts ``python -m qpa train`` for the default config (smollm2, the whole chatterbot corpus,
300 steps), QPA then its LoRA baseline one after the other (as the studio does with one run at
a time), with ``QPA_HOME`` set to a fresh folder, and polls the run folders as the app does.
Part 2 loads the (now converted) model and computes the rows of the same data four ways, each
step of the new cache added in turn: the old bulk way (`backbone_rows`: length-sorted batches of
16, torch's default threads), length buckets of `TOKENS_PER_BATCH` tokens, plus the shared
prefix's key/value cache, plus the load-aware thread count (the new cache). Rows are compared
with the old ones.

    python tests/bench/bench_first_run.py [--home /tmp/qpa-home-16] [--skip-launch]
        [--compare-examples N]  # part 2 on the first N training examples (0: all, train + val)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
MARKER = ".bench_first_run"  # a --home this script made, so it may delete it


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def watch_run(folder: Path, proc: subprocess.Popen, t0: float) -> dict[str, float]:
    """Seconds from `t0` to each milestone of the run in `folder`, polled every 0.2 s."""
    seen: dict[str, float] = {}
    while True:
        now = time.monotonic() - t0
        status = _read(folder / "status.json") or {}
        if status.get("phase") in ("caching rows", "training"):
            seen.setdefault("model ready", now)
        metrics = folder / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        splits = {json.loads(line).get("split") for line in lines if line.strip()}
        if "val" in splits:
            seen.setdefault("first validation point", now)
        if "train" in splits:
            seen.setdefault("first training step", now)
        if proc.poll() is not None:
            seen["finished"] = now
            seen["state"] = status.get("state")
            return seen
        time.sleep(0.2)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def launch(home: Path) -> None:
    """Part 1: the default QPA + LoRA launch from a fresh `home`."""
    if home.exists() and not (home / MARKER).exists() and any(home.iterdir()):
        sys.exit(f"{home} is not empty and not this benchmark's: pass a new --home")
    shutil.rmtree(home, ignore_errors=True)  # fresh: the model is converted again
    home.mkdir(parents=True)
    (home / MARKER).touch()
    runs = home / "runs"
    env = {**os.environ, "QPA_HOME": str(home), "PYTHONPATH": str(ROOT)}
    print(f"part 1: default launch, fresh QPA_HOME={home}; {load()}")
    t0 = time.monotonic()
    for method in ("qpa-lora", "lora"):
        argv = [sys.executable, "-m", "qpa", "train", "--method", method, "--name", method,
                "--runs-dir", str(runs)]  # fmt: skip
        with open(home.parent / f"{home.name}-{method}.log", "w") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            seen = watch_run(runs / method, proc, t0)
        for name, value in seen.items():
            shown = value if isinstance(value, str) else f"{value:7.1f} s after launch"
            print(f"  {method:8s} {name:24s} {shown}")
    print(f"  launch finished (QPA + LoRA) {time.monotonic() - t0:7.1f} s; {load()}")


def compare(home: Path, n_examples: int) -> None:
    """Part 2: the row cache old against new, each step of the new one measured, one process."""
    import torch

    from qpa.config import RunConfig
    from qpa.data.splits import build_splits
    from qpa.models.loading import load_model
    from qpa.training.rows import TOKENS_PER_BATCH, backbone_rows, example_rows, run_prefix
    from qpa.training.threads import forward_threads, thread_count

    os.environ["QPA_HOME"] = str(home)
    config = RunConfig()
    model, tok = load_model(config.model.model)
    splits = build_splits(config.data, tok)
    parts = [splits.train, splits.val]
    if n_examples:
        parts = [_first(splits.train, n_examples)]
    tokens = sum(e.n_tokens for e in parts)
    threads, chosen = torch.get_num_threads(), forward_threads()
    print(f"part 2: row cache of {sum(len(e) for e in parts):,} examples ({tokens:,} tokens), "
          f"torch threads {threads}, chosen {chosen}; {load()}")  # fmt: skip
    perplexity, old_rows, times = config.train.perplexity, [], {}

    def timed(name, fn):
        tic = time.perf_counter()
        out = [fn(e) for e in parts]
        times[name] = time.perf_counter() - tic
        print(f"  {name:44s} {times[name]:7.1f} s  {tokens / times[name]:6.0f} tokens/s  "
              f"{times[name] and times['old: sorted batches of 16'] / times[name]:.2f}× cheaper")
        return out

    def new(e, prefix=True):
        p = run_prefix(model, e, perplexity) if prefix else None
        return example_rows(model, e, torch.arange(len(e)), perplexity, p, TOKENS_PER_BATCH)

    old_rows = timed("old: sorted batches of 16", lambda e: backbone_rows(model, e, perplexity).hidden)
    timed(f"+ length buckets of {TOKENS_PER_BATCH} tokens", lambda e: new(e, prefix=False))
    timed("+ shared prefix key/value cache", new)
    with thread_count(chosen):
        rows = timed(f"+ thread count {chosen} (the new cache)", new)
    diff = max(float((a - b).abs().max()) for a, b in zip(old_rows, rows, strict=True))
    scale = max(float(a.abs().max()) for a in old_rows)
    print(f"  max |new − old| = {diff:.2e} (rows up to {scale:.1f}); {load()}")
    few = _first(parts[0], 16)  # the floor: the old way itself, batches of 16 against 1
    floor = backbone_rows(model, few, perplexity).hidden - backbone_rows(model, few, perplexity, 1).hidden
    print(f"  floor: old way, batches of 16 against 1 (16 examples): max |diff| = "
          f"{float(floor.abs().max()):.2e}")


def _first(encoded, n: int):
    from qpa.data.encoding import Encoded

    return Encoded(encoded.input_ids[:n], encoded.attention_mask[:n], encoded.assistant_mask[:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/qpa-home-16"))
    parser.add_argument("--skip-launch", action="store_true", help="part 2 only")
    parser.add_argument("--compare-examples", type=int, default=0)
    args = parser.parse_args()
    if not args.skip_launch:
        launch(args.home)
    compare(args.home, args.compare_examples)


if __name__ == "__main__":
    main()
