"""What the Train tab's watch panel shows of the runs it watches: a progress card per run
(state, queue position, bar, step and epoch, ETA, loss, perplexity, the best step against the
base model, and warnings), their curves, and a cheap signature that changes whenever one of
them does (so unchanged timer ticks redraw nothing).
"""

from __future__ import annotations

import html

from app.jobs import LIVE
from app.state import Studio
from qpa import (
    METHODS,
    describe_phase,
    format_duration,
    headline,
    list_runs,
    open_run,
    rising_warning,
)


def latest_launch(studio: Studio, pair: bool = False) -> list[str]:
    """The newest launch group worth showing, QPA first: not all cancelled, and with `pair`
    both QPA and its LoRA baseline (else the newest two runs)."""
    runs = list_runs(studio.root)
    order = list(METHODS)  # launch order: QPA, then its baseline
    for group in dict.fromkeys(r.group for r in runs):
        members = sorted(
            (r for r in runs if r.group == group), key=lambda r: order.index(r.config.adapter.method)
        )
        if all(r.status().get("state") == "cancelled" for r in members):
            continue
        if not pair or {r.config.adapter.method for r in members} >= set(order):
            return [r.id for r in members]
    return [r.id for r in runs[:2]] if pair else []


def _facts(status: dict, train: list[dict], val: list[dict], batch_size: int = 0) -> list[str]:
    """The short facts under a run's progress bar."""
    state, step, total = status.get("state"), status.get("step") or 0, status.get("total_steps")
    if state == "queued":
        return [
            f"queued: position {status.get('position', '?')} of {status.get('queued', '?')}",
            f"{status.get('training', 0)} training now, at most {status.get('max_runs', 1)} at once",
        ]
    facts = [f"step {step}/{total}" if total else "starting the training process"]
    if status.get("n_train") and total and batch_size:
        per_step = batch_size / status["n_train"]
        facts.append(f"epoch {step * per_step:.2f} of {total * per_step:.2f}")
    if state == "starting":
        facts.append("starting the training process")
    if train and state == "running":
        last = train[-1]
        per_step = last["elapsed"] / max(1, last["step"])
        facts += [
            f"ETA {format_duration(per_step * max(0, (total or 0) - step))}",
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
    return facts + _best_facts(status, val)


def best_step(status: dict, val: list[dict]) -> int | None:
    """The step a finished run exported, else the best evaluation so far (the replies' loss on
    chat data, as the engine picks it)."""
    result = status.get("result") or {}
    if "exported_step" in result:
        return result["exported_step"]
    return min(val, key=lambda m: headline(m)[1])["step"] if val else None


def _best_facts(status: dict, val: list[dict]) -> list[str]:
    """The best (or exported) step's perplexity, and the base model's on the same data."""
    base, step = status.get("base") or {}, best_step(status, val)
    facts = []
    kept = next((m for m in val if m["step"] == step), None)
    if kept is not None:
        what, ppl = headline(kept)
        word = "exported" if "exported_step" in (status.get("result") or {}) else "best"
        facts.append(f"{word} step {step}: {what} {ppl:.3f}")
    if base:
        facts.append(f"base model {base['headline_perplexity']:.3f}")
    return facts


def _notes(status: dict, val: list[dict]) -> list[tuple[str, str]]:
    """(css class, text) warnings under the facts: worse than the base model, overfitting."""
    result, base = status.get("result") or {}, status.get("base") or {}
    notes = []
    if result.get("worse_than_base"):
        notes.append(("qpa-worse", (
            f"Worse than the base model: even the exported step ({result['exported_step']}) has "
            f"a validation perplexity above the base model's {base.get('headline_perplexity', 0):.3f}"
            ". Use more data, fewer steps or a lower learning rate."
        )))  # fmt: skip
    values = [headline(m)[1] for m in val]
    rising = rising_warning(values, [m["step"] for m in val])
    if rising:
        notes.append(("qpa-warning", rising[0].upper() + rising[1:]))
    return notes


def run_card(studio: Studio, run_id: str) -> str:
    """One run's progress as HTML: state (queue position), bar, step, ETA, loss, perplexity."""
    try:
        status = studio.jobs.state(run_id)
        run = open_run(run_id, studio.root)
        train, val, method = run.metrics("train"), run.metrics("val"), run.config.adapter.method
        batch = run.config.train.batch_size
    except ValueError as e:  # e.g. its folder was deleted while the page watched it
        status, train, val, method, batch = {"state": "failed", "error": str(e)}, [], [], "", 0
    state, step, total = status.get("state", "unknown"), status.get("step") or 0, 0
    if state != "queued":
        total = status.get("total_steps") or 0
    pct = 100 * step / total if total else 0
    error = status.get("error")
    facts = _facts(status, train, val, batch)
    notes = "".join(
        f'<div class="{css}">{html.escape(text)}</div>' for css, text in _notes(status, val)
    )
    stop = (
        f'<button class="qpa-stop-one" data-stop-run="{html.escape(run_id)}">Stop</button>'
        if state in LIVE
        else ""
    )
    return (
        f'<div class="qpa-run qpa-{html.escape(state)}"><div class="qpa-run-head">'
        f'<code>{html.escape(run_id)}</code><span class="qpa-badge">{html.escape(state)}</span>'
        f'<span class="qpa-method">{html.escape(method)}</span>{stop}</div>'
        f'<div class="qpa-bar"><div style="width:{pct:.1f}%"></div></div>'
        f'<div class="qpa-facts">{" · ".join(html.escape(f) for f in facts)}</div>'
        + (f'<div class="qpa-error">{html.escape(str(error))}</div>' if error else "")
        + notes
        + "</div>"
    )


def series(studio: Studio, ids: list[str]) -> list[dict]:
    """Curve data for `plots.curves_figure`: train loss and val perplexity (all tokens, and the
    assistant replies where the data has them) per run, its perplexity protocol, the base
    model's perplexities, the best (or exported) step and the planned epochs."""
    out = []
    for run_id in ids:
        if not (studio.root / run_id / "config.json").is_file():
            continue
        run = open_run(run_id, studio.root)
        val, status = run.metrics("val"), run.status()
        base = status.get("base") or {}
        n_train, t = status.get("n_train"), run.config.train
        out.append(
            {
                "label": run_id,
                "method": run.config.adapter.method,
                "train": [(m["step"], m["loss"]) for m in run.metrics("train")],
                "val": [(m["step"], m["perplexity"]) for m in val],
                "val_assistant": [
                    (m["step"], m["assistant_perplexity"]) for m in val if "assistant_perplexity" in m
                ],
                "perplexity": t.perplexity,
                "base": base.get("perplexity"),
                "base_assistant": base.get("assistant_perplexity"),
                "best_step": best_step(status, val),
                "epochs": t.steps * t.batch_size / n_train if n_train else None,
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
