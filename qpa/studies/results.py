"""Finished runs as comparable results: one record per run, grouped over seeds into table rows.

A run's group is its whole config except the seed, so any runs (from the app, `python -m qpa
train` or `python -m qpa sweep`) that differ only in their seed are averaged together. Each group
is compared with the plain-LoRA group on the same model, targets, rank and data: parameters as a
share of LoRA's, and perplexity differences in percent (positive: worse than LoRA).

>>> summarize([])
[]
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from qpa.config import DEFAULT_LR, QPAConfig, RunConfig, TrainConfig

_QPA_DEFAULTS = QPAConfig().to_dict()
_TRAIN_DEFAULTS = TrainConfig().to_dict()
_TRAIN_SHOWN = ("steps", "batch_size", "lr", "loss_on", "perplexity", "schedule", "weight_decay")


def label(config: RunConfig) -> str:
    """A short name for a config: its method and the QPA and training settings that differ
    from the defaults (the seed aside).

    >>> label(RunConfig.from_dict({"qpa": {"activation": "gelu", "chunk_size": 1024}}))
    'qpa-lora chunk_size=1024 activation=gelu'
    >>> label(RunConfig.from_dict({"train": {"lr": 0.02, "steps": 600}}))
    'qpa-lora steps=600 lr=0.02'
    >>> label(RunConfig.from_dict({"adapter": {"method": "lora"}}))
    'lora'
    >>> label(RunConfig.from_dict({"adapter": {"use_dora": True, "dora_norm": "differentiated"}}))
    'qpa-dora magnitude=trainable norm=differentiated'
    """
    adapter = config.adapter.to_dict()
    parts = [config.adapter.method]
    if adapter.get("use_dora"):
        parts[0] = parts[0].replace("lora", "dora")
        if config.adapter.method == "qpa-lora":
            parts.append(f"magnitude={adapter.get('dora_magnitude')}")
        if config.adapter.dora_norm != "constant":
            parts.append(f"norm={config.adapter.dora_norm}")
    if config.adapter.method == "qpa-lora":
        for key, value in config.qpa.to_dict().items():
            if value != _QPA_DEFAULTS[key]:
                shown = ",".join(map(str, value)) if isinstance(value, list) else value
                parts.append(f"{key}={shown}")
    defaults = {**_TRAIN_DEFAULTS, "lr": DEFAULT_LR[config.adapter.method]}
    train = config.resolved().train.to_dict()
    parts += [f"{k}={train[k]:g}" if k == "lr" else f"{k}={train[k]}" for k in _TRAIN_SHOWN
              if train[k] != defaults[k]]  # fmt: skip
    return " ".join(parts)


def _group_key(config: RunConfig) -> str:
    data = config.to_dict()
    data["train"].pop("seed")
    if config.adapter.method == "lora":
        data.pop("qpa")  # irrelevant to plain LoRA
    return json.dumps(data, sort_keys=True)


def _baseline_key(config: RunConfig) -> str:
    """What a QPA group shares with its LoRA baseline (everything but method, QPA and lr)."""
    data = config.to_dict()
    data.pop("qpa")
    data["adapter"].pop("method")
    data["adapter"].pop("dora_magnitude", None)
    for key in ("seed", "lr"):
        data["train"].pop(key)
    return json.dumps(data, sort_keys=True)


def run_record(run) -> dict[str, Any] | None:
    """The result of a finished (done) run, or None for any other run."""
    status = run.status()
    result = status.get("result") or {}
    if status.get("state") != "done" or "val_perplexity" not in result:
        return None
    config = run.config
    return {
        "id": run.id,
        "label": label(config),
        "method": config.adapter.method,
        "group": _group_key(config),
        "baseline": _baseline_key(config),
        "seed": config.train.seed,
        "steps": result.get("step"),
        "params": result.get("trainable_params"),
        "perplexity": result["val_perplexity"],
        "assistant_perplexity": result.get("val_assistant_perplexity"),
        "wall_time": result.get("wall_time"),
        "config": config,
    }


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group (mean ± std over seeds), compared with its LoRA group where there is one.

    Rows are sorted by parameters; `vs_lora_*` are percent differences of the means.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["group"], []).append(record)
    rows = []
    for members in groups.values():
        first = members[0]
        ppl, ppl_std = _mean_std([m["perplexity"] for m in members])
        asst, asst_std = _mean_std([m["assistant_perplexity"] for m in members])
        rows.append({
            "label": first["label"], "method": first["method"], "baseline": first["baseline"],
            "params": first["params"], "seeds": sorted(m["seed"] for m in members),
            "runs": [m["id"] for m in members], "steps": first["steps"],
            "perplexity": ppl, "perplexity_std": ppl_std,
            "assistant_perplexity": asst, "assistant_perplexity_std": asst_std,
            "config": first["config"],
        })  # fmt: skip
    lora = {r["baseline"]: r for r in rows if r["method"] == "lora"}
    for row in rows:
        base = lora.get(row["baseline"])
        row["vs_lora_params"] = row["params"] / base["params"] if base and base["params"] else None
        for key in ("perplexity", "assistant_perplexity"):
            ours, theirs = row[key], base and base[key]
            row[f"vs_lora_{key}"] = 100 * (ours / theirs - 1) if ours and theirs else None
    return sorted(rows, key=lambda r: (r["params"] or 0, r["label"]))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (mean ± std over seeds; % vs LoRA in brackets)."""

    def ppl(row: dict, key: str) -> str:
        mean, std, diff = row[key], row[f"{key}_std"], row[f"vs_lora_{key}"]
        if mean is None:
            return "–"
        text = f"{mean:.3f} ± {std:.3f}" if len(row["seeds"]) > 1 else f"{mean:.3f}"
        return text + (f" ({diff:+.1f}%)" if diff is not None and row["method"] != "lora" else "")

    lines = [
        "| configuration | params | % of LoRA | seeds | val PPL, all tokens | val PPL, assistant |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        share = f"{row['vs_lora_params']:.2%}" if row["vs_lora_params"] else "–"
        lines.append(
            f"| {row['label']} | {row['params']:,} | {share} | {len(row['seeds'])} | "
            f"{ppl(row, 'perplexity')} | {ppl(row, 'assistant_perplexity')} |"
        )
    return "\n".join(lines)
