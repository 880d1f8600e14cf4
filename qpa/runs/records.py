"""What a run folder's records must hold to be read: the status fields and their types, usable
metrics records (and the ones a resume redid), and a checkpoint's step.

Readers check these instead of trusting the files, because other tools, hand edits and disk
faults write them too: a damaged record makes its run read as failed with the reason, or is
skipped (a metrics line), and never stops a listing or the queue.

>>> status_problem({"state": "done", "created": 12345})
'`created` = 12345 has the wrong type'
>>> checkpoint_problem({"step": 999}, 10)
"its step 999 is not a whole number from 0 to the run's 10 steps; train the run afresh"
"""

from __future__ import annotations

from typing import Any

STATES = ("queued", "running", "done", "failed", "cancelled")
_TEXT, _WHOLE = (str, type(None)), (int, type(None))
STATUS_FIELDS = {  # status.json field: the types it may hold (a bool is no whole number)
    "state": str, "error": _TEXT, "pid": _WHOLE, "host": _TEXT, "created": _TEXT,
    "started": _TEXT, "updated": _TEXT, "finished": _TEXT, "step": _WHOLE,
    "total_steps": _WHOLE, "message": _TEXT,
}  # fmt: skip


def status_problem(status: Any) -> str | None:
    """What is wrong with a parsed ``status.json``, or None when its fields have their types."""
    if not isinstance(status, dict):
        return f"it holds a {type(status).__name__}, not a mapping"
    for name, types in STATUS_FIELDS.items():
        value = status.get(name)
        if isinstance(value, bool) or not isinstance(value, types):
            return f"`{name}` = {value!r} has the wrong type"[:200]
    if status["state"] not in STATES:
        return f"`state` = {status['state']!r} is not one of: {', '.join(STATES)}"[:200]
    return None


def checkpoint_problem(meta: Any, total_steps: int) -> str | None:
    """What is wrong with a checkpoint's meta, or None when it holds a whole step in
    0 … `total_steps`."""
    step = meta.get("step") if isinstance(meta, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= total_steps:
        return (
            f"its step {step!r} is not a whole number from 0 to the run's {total_steps} steps; "
            "train the run afresh"
        )
    return None


def plain_record(record: dict[str, Any]) -> bool:
    """A metrics record readers can use: a text split (or none) and a numeric step."""
    step = record.get("step")
    number = isinstance(step, (int, float)) and not isinstance(step, bool)
    return isinstance(record.get("split"), (str, type(None))) and number


def _at_or_after(record: dict[str, Any], step: float) -> bool:
    value = record.get("step")
    return isinstance(value, (int, float)) and value >= step


def rewound(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with those a resume redid replaced: a step at or before a split's last one
    drops that split's records from that step on (they were lost with the crashed process)."""
    out: list[dict[str, Any]] = []
    last: dict[Any, float] = {}
    for r in records:
        split, step = r.get("split"), r.get("step")
        if isinstance(step, (int, float)) and step <= last.get(split, float("-inf")):
            out = [o for o in out if o.get("split") != split or not _at_or_after(o, step)]
        out.append(r)
        if isinstance(step, (int, float)):
            last[split] = step
    return out
