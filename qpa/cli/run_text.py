"""How the CLI words a run: its state (flagged when it ended worse than the base model) and,
once finished, which step it exported and how that compares with the base model."""

from __future__ import annotations

from typing import Any

from qpa.formatting import format_number


def state_text(row: dict[str, Any]) -> str:
    """A run's state, flagged when its exported step is worse than the base model.

    >>> state_text({"state": "done", "worse_than_base": True})
    'done (worse than the base model)'
    """
    return row["state"] + (" (worse than the base model)" if row.get("worse_than_base") else "")


def outcome(result: dict[str, Any]) -> str:
    """A finished run's result in one line: the exported step against the base model.

    >>> print(outcome({"exported_step": 50, "best_step": 50, "val_assistant_perplexity": 9.5,
    ...   "val_perplexity": 12.0, "base_perplexity": 10.0, "base_headline": "replies",
    ...   "worse_than_base": False}))
    exported step 50 (the best): validation perplexity (replies) 9.500, base model 10.000
    """
    if "exported_step" not in result:
        return ""
    what = result.get("base_headline", "all tokens")
    ppl = result.get("val_assistant_perplexity" if what == "replies" else "val_perplexity")
    best = " (the best)" if result["exported_step"] == result.get("best_step") else " (the last)"
    worse = "; worse than the base model" if result.get("worse_than_base") else ""
    return (
        f"exported step {result['exported_step']}{best}: validation perplexity ({what}) "
        f"{format_number(ppl)}, base model {format_number(result.get('base_perplexity'))}{worse}"
    )
