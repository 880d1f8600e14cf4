"""A run's upload folder: its adapter, or the base model with it merged in, plus the model card.

What ``python -m qpa export`` writes and what ``python -m qpa push`` uploads; runs trained
before cards existed get one here too.
"""

from __future__ import annotations

from pathlib import Path

from qpa.runs.run import Run


def run_adapter(run: Run) -> Path:
    """The run's exported adapter folder; ValueError when it has none yet."""
    if not run.has_adapter():
        state = run.status().get("state")
        raise ValueError(
            f"`run` {run.id!r} has no exported adapter (state: {state}); train it to the end first."
        )
    return run.adapter_dir


def write_export(run: Run, out: Path, merged: bool) -> None:
    """Write the run's adapter (or the base model with it merged) into the folder `out`, with
    its model card and the base model's Hub id: runs exported before cards existed get them."""
    import shutil

    from qpa.adapters.model_card import make_hub_ready
    from qpa.inference.chat import ChatModel

    if merged:
        model = ChatModel.load(run.config.model.model, run_adapter(run), merge=True)
        model.model.save_pretrained(out)
        model.tokenizer.save_pretrained(out)
    else:
        shutil.copytree(run_adapter(run), out, dirs_exist_ok=True)
    make_hub_ready(out, run, merged)
