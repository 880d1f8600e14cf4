"""The app's default launch, made as a new user makes it, timed: the Design and Train tabs as
they first show (the config's defaults: smollm2, `qpa-shallow-gelu`, every chatterbot topic,
300 steps × batch 8), launched through the Train tab's own `launch` (QPA and its LoRA
baseline, background processes started by the studio one after the other); prints the plan,
then each run's exported step, reply perplexity against the base model's, and the wall time
from Launch. README "A default run improves the model".

    PYTHONPATH=. python tests/bench/bench_default_launch.py RUNS_DIR [--nice 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from app.handlers import shape, train
from app.settings import FULL
from app.state import Studio
from app.tabs.train import start_values
from qpa import DEFAULT_MODEL, open_run

SHOWN = ("exported_step", "best_step", "val_assistant_perplexity", "val_perplexity",
         "base_perplexity", "worse_than_base", "wall_time")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--nice", type=int, default=0, help="the studio's niceness for training "
                        "(the app's is 10; 0 on a machine shared with other jobs)")  # fmt: skip
    args = parser.parse_args()
    studio = Studio.create(runs_root=args.runs_dir, demo=False)
    studio.jobs.nice = args.nice
    design = {**shape.DEFAULTS, "model": DEFAULT_MODEL}
    design["n_qubits"] = shape.linked(design, "chunk")[1]
    form = {**design, **start_values(FULL), "plan": next(iter(train.PLANS)), "topics": []}
    print(train.plan_text(form))
    t0 = time.time()
    ids, _ = train.launch(studio, form)
    for run_id in ids:
        state = studio.jobs.wait(run_id, timeout=3 * 3600)["state"]
        result = open_run(run_id, args.runs_dir).status().get("result") or {}
        print(f"{run_id}: {state} {time.time() - t0:.0f} s after Launch")
        print(json.dumps({k: result.get(k) for k in SHOWN}), flush=True)


if __name__ == "__main__":
    main()
