"""What the Train tab's watch panel shows of the runs it watches: a progress card per run
(state, queue position, bar, step, ETA, loss, perplexity), their curves, and a cheap signature
that changes whenever one of them does (so unchanged timer ticks redraw nothing).
"""

from __future__ import annotations

import html

from app.state import Studio
from qpa import describe_phase, open_run


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _facts(status: dict, train: list[dict], val: list[dict]) -> list[str]:
    """The short facts under a run's progress bar."""
    state, step, total = status.get("state"), status.get("step") or 0, status.get("total_steps")
    if state == "queued":
        return [
            f"queued: position {status.get('position', '?')} of {status.get('queued', '?')}",
            f"{status.get('training', 0)} training now, at most {status.get('max_runs', 1)} at once",
        ]
    facts = [f"step {step}/{total}" if total else "starting the training process"]
    if state == "starting":
        facts.append("starting the training process")
    if train and state == "running":
        last = train[-1]
        per_step = last["elapsed"] / max(1, last["step"])
        facts += [
            f"ETA {_fmt_time(per_step * max(0, (total or 0) - step))}",
            f"{last.get('tokens_per_s', 0):,.0f} tokens/s",
        ]
    elif state == "running":
        facts.append(status.get("message") or "loading the model and data")
    rows = status.get("rows") or {}
    if state == "running" and train and rows.get("split") == "train" and rows["done"] < rows["total"]:
        facts.append(describe_phase("caching rows", rows))  # training rows stream in meanwhile
    if train:
        facts.append(f"loss {train[-1]['loss']:.4f}")
    if val:
        last = val[-1]
        assistant = f", replies {last['assistant_perplexity']:.3f}" if "assistant_perplexity" in last else ""
        facts.append(f"val perplexity {last['perplexity']:.3f}{assistant}")
    if status.get("trainable_params"):
        facts.append(f"{status['trainable_params']:,} trainable")
    return facts


def run_card(studio: Studio, run_id: str) -> str:
    """One run's progress as HTML: state (queue position), bar, step, ETA, loss, perplexity."""
    try:
        status = studio.jobs.state(run_id)
        run = open_run(run_id, studio.root)
        train, val, method = run.metrics("train"), run.metrics("val"), run.config.adapter.method
    except ValueError as e:  # e.g. its folder was deleted while the page watched it
        status, train, val, method = {"state": "failed", "error": str(e)}, [], [], ""
    state, step, total = status.get("state", "unknown"), status.get("step") or 0, 0
    if state != "queued":
        total = status.get("total_steps") or 0
    pct = 100 * step / total if total else 0
    error = status.get("error")
    facts = _facts(status, train, val)
    return (
        f'<div class="qpa-run qpa-{html.escape(state)}"><div class="qpa-run-head">'
        f'<code>{html.escape(run_id)}</code><span class="qpa-badge">{html.escape(state)}</span>'
        f'<span class="qpa-method">{html.escape(method)}</span></div>'
        f'<div class="qpa-bar"><div style="width:{pct:.1f}%"></div></div>'
        f'<div class="qpa-facts">{" · ".join(html.escape(f) for f in facts)}</div>'
        + (f'<div class="qpa-error">{html.escape(str(error))}</div>' if error else "")
        + "</div>"
    )


def series(studio: Studio, ids: list[str]) -> list[dict]:
    """Curve data for `plots.curves_figure`: train loss and val perplexity (all tokens, and the
    assistant replies where the data has them) per run, and its perplexity protocol."""
    out = []
    for run_id in ids:
        if not (studio.root / run_id / "config.json").is_file():
            continue
        run = open_run(run_id, studio.root)
        val = run.metrics("val")
        out.append(
            {
                "label": run_id,
                "method": run.config.adapter.method,
                "train": [(m["step"], m["loss"]) for m in run.metrics("train")],
                "val": [(m["step"], m["perplexity"]) for m in val],
                "val_assistant": [
                    (m["step"], m["assistant_perplexity"]) for m in val if "assistant_perplexity" in m
                ],
                "protocol": run.config.train.perplexity,
            }
        )
    return out


def signature(studio: Studio, ids: list[str]) -> str:
    """Changes whenever a watched run's status or metrics change (cheap stat calls)."""
    parts = []
    for run_id in ids:
        for name in ("status.json", "metrics.jsonl"):
            try:
                st = (studio.root / run_id / name).stat()
                parts.append(f"{st.st_mtime_ns}:{st.st_size}")
            except OSError:
                parts.append("-")
        try:
            state = studio.jobs.state(run_id)
        except ValueError:
            state = {}
        parts.append(f"{state.get('state', '')}:{state.get('position', '')}")
    return f"{ids}|{'|'.join(parts)}"
