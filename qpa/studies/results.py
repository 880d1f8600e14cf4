"""Finished runs as comparable results: one record per run, grouped over seeds into table rows.

A run's group is its whole config except the seed, so any runs (from the app, `python -m qpa
train` or `python -m qpa sweep`) that differ only in their seed are averaged together. Each group
is compared with a plain-LoRA group only like with like: the same model, targets, rank, data,
steps, batch size, evaluation protocol and seed set. Parameters are then a share of LoRA's and
perplexities a difference in percent (positive: worse than LoRA), unless either side ended
worse than the base model: such a comparison is no win, and the table says so instead.

>>> summarize([])
[]
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from qpa.config import DEFAULT_LR, PAPER_MAPPING, QPAConfig, RunConfig, TrainConfig

_QPA_PAPER = QPAConfig(**PAPER_MAPPING).to_dict()
_TRAIN_DEFAULTS = TrainConfig().to_dict()
_TRAIN_SHOWN = ("steps", "batch_size", "lr", "loss_on", "perplexity", "schedule", "weight_decay")


def label(config: RunConfig) -> str:
    """A short name for a config: its method and the QPA settings that differ from the paper's
    shape (`PAPER_MAPPING`; the defaults differ), and the training ones that differ from the
    defaults (the seed aside).

    >>> label(RunConfig.from_dict({"qpa": {**PAPER_MAPPING, "chunk_size": 1024}}))
    'qpa-lora chunk_size=1024'
    >>> label(RunConfig())
    'qpa-lora hidden_sizes=64,48 activation=gelu fourier_features=16'
    >>> label(RunConfig.from_dict({"train": {"lr": 0.02, "steps": 600}})).split("=16 ")[1]
    'steps=600 lr=0.02'
    >>> label(RunConfig.from_dict({"adapter": {"method": "lora"}}))
    'lora'
    >>> label(RunConfig.from_dict({"adapter": {"use_dora": True, "dora_norm": "differentiated"}}))[:48]
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
            if value != _QPA_PAPER[key]:
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


def data_text(config: RunConfig) -> str:
    """The data a run used, in words.

    >>> data_text(RunConfig()), data_text(RunConfig.from_dict({"data": {"topics": ["ai"]}}))
    ('chatterbot (all topics)', 'chatterbot (ai)')
    """
    d = config.data
    what = f"{d.corpus} ({', '.join(d.topics) or 'all topics'})" if d.corpus == "chatterbot" else d.corpus
    cap = f", at most {d.max_examples:,} examples" if d.max_examples else ""
    held = f", validated on {d.eval_corpus}" if d.eval_corpus else ""
    return what + cap + held


def run_record(run) -> dict[str, Any] | None:
    """The result of a finished (done) run, or None for any other run."""
    status = run.status()
    result = status.get("result") or {}
    if status.get("state") != "done" or "val_perplexity" not in result:
        return None
    config, base = run.config, status.get("base") or {}
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
        "base_perplexity": base.get("perplexity"),
        "base_assistant_perplexity": base.get("assistant_perplexity"),
        "worse_than_base": bool(result.get("worse_than_base")),
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
            "base_perplexity": first.get("base_perplexity"),
            "base_assistant_perplexity": first.get("base_assistant_perplexity"),
            "worse_than_base": any(m.get("worse_than_base") for m in members),
            "data": data_text(first["config"]), "config": first["config"],
        })  # fmt: skip
    lora = {(r["baseline"], tuple(r["seeds"])): r for r in rows if r["method"] == "lora"}
    for row in rows:
        _compare(row, lora.get((row["baseline"], tuple(row["seeds"]))))
    return sorted(rows, key=lambda r: (r["params"] or 0, r["label"]))


def _compare(row: dict[str, Any], base: dict[str, Any] | None) -> None:
    """Fill `row`'s comparison with its like-with-like LoRA group `base` (None: there is none)."""
    row["vs_lora_params"] = row["params"] / base["params"] if base and base["params"] else None
    row["no_win"] = bool(base) and (row["worse_than_base"] or base["worse_than_base"])
    for key in ("perplexity", "assistant_perplexity"):
        ours, theirs = row[key], base and base[key]
        row[f"vs_lora_{key}"] = 100 * (ours / theirs - 1) if ours and theirs else None


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (mean ± std over seeds; % vs LoRA in brackets where the
    runs compare like with like), the base model's perplexity, and what was compared."""

    def ppl(row: dict, key: str) -> str:
        mean, std, diff = row[key], row[f"{key}_std"], row[f"vs_lora_{key}"]
        if mean is None:
            return "–"
        text = f"{mean:.3f} ± {std:.3f}" if len(row["seeds"]) > 1 else f"{mean:.3f}"
        if row["method"] == "lora" or diff is None:
            return text
        return text + (" (no win: worse than base)" if row["no_win"] else f" ({diff:+.1f}%)")

    def base(row: dict) -> str:
        value = row.get("base_assistant_perplexity") or row.get("base_perplexity")
        worse = " **worse than base**" if row.get("worse_than_base") else ""
        return (f"{value:.3f}" if value else "–") + worse

    lines = [
        "| configuration | data | params | % of LoRA | seeds | val PPL, all tokens | "
        "val PPL, assistant | base model PPL |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for row in rows:
        share = f"{row['vs_lora_params']:.2%}" if row["vs_lora_params"] else "–"
        lines.append(
            f"| {row['label']} | {row.get('data', '–')} | {row['params']:,} | {share} | "
            f"{len(row['seeds'])} | {ppl(row, 'perplexity')} | {ppl(row, 'assistant_perplexity')} "
            f"| {base(row)} |"
        )
    return "\n".join([*lines, "", COMPARED])


COMPARED = (
    "A % vs LoRA compares runs with the same model, targets, rank, data, steps, batch size, "
    "evaluation protocol and seed set only (– where no such LoRA run exists); a run worse than "
    "the base model (replies' perplexity on chat data) is never counted as a win."
)


def param_points(rows: list[dict], metric: str) -> list[dict]:
    """Points of a parameters-vs-perplexity chart: the `summarize` rows that have this
    perplexity (`metric`: ``perplexity`` or ``assistant_perplexity``), as plain numbers."""
    return [
        {
            "label": r["label"],
            "method": "dora" if r["method"] == "lora" and r["config"].adapter.use_dora else r["method"],
            "params": r["params"],
            "mean": r[metric],
            "std": r[f"{metric}_std"],
            "seeds": r["seeds"],
            "share": r["vs_lora_params"],
            "base": r[f"base_{metric}"],
            "data": r["data"],
        }
        for r in rows
        if r[metric] is not None and r["params"]
    ]


def _family(config: RunConfig) -> tuple[str, str]:
    """(key, label) of a QPA config with its shots and noise set aside (and its seed)."""
    data = config.to_dict()
    data["train"].pop("seed")
    for name in ("shots", "noise"):
        data["qpa"].pop(name)
    exact = config.replace(qpa=config.qpa.replace(shots=0, noise=0.0))
    return json.dumps(data, sort_keys=True), label(exact)


def measurement_points(rows: list[dict], metric: str) -> list[dict]:
    """Points of a perplexity-vs-measurement chart: the QPA shapes trained at ≥ 2 settings of
    shots and noise, grouped by shape (their other settings equal, seeds aside)."""
    families: dict[str, list[dict]] = {}
    for r in rows:
        if r["method"] != "qpa-lora" or r[metric] is None:
            continue
        key, name = _family(r["config"])
        q = r["config"].qpa
        families.setdefault(key, []).append(
            {"family": name, "shots": q.shots, "noise": q.noise, "mean": r[metric],
             "std": r[f"{metric}_std"], "seeds": r["seeds"]}
        )  # fmt: skip
    return [p for group in families.values() if len(group) > 1 for p in group]
