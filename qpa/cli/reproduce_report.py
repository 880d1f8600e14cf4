"""What ``python -m qpa reproduce`` prints: a recipe's plan (``--dry-run``), the paper's figures
beside the measured ones after a run, and the list of recipes.

>>> _floor_percent(173_888 / 1_032_192), f"{173_888 / 1_032_192:.2%}"
('16.84%', '16.85%')
"""

from __future__ import annotations

import math
from typing import Any

from qpa.formatting import format_table
from qpa.studies.reproduce import NAMES, PROTOCOL_NOTES, RECIPES, TEST_BATCH, Plan


def _floor_percent(ratio: float) -> str:
    """A share as the paper prints it: a percentage truncated to 2 decimals."""
    return f"{math.floor(ratio * 10_000) / 100:.2f}%"


def _counts_table(plan: Plan) -> str:
    paper = {m: e.trainable_params for m, e in plan.recipe.expected.items()}
    c = plan.counts
    return format_table([
        ("parameters", "paper", f"counted ({plan.count_model})"),
        ("QPA-LoRA", f"{paper['qpa-lora']:,}", f"{c.qpa_params:,}"),
        ("LoRA", f"{paper['lora']:,}", f"{c.lora_params:,}"),
        ("QPA / LoRA", f"{_floor_percent(paper['qpa-lora'] / paper['lora'])}", f"{c.ratio:.3%}"),
    ], right=(1, 2))  # fmt: skip


def format_plan(plan: Plan) -> str:
    """What a dry run prints: the protocol, the paper's figures and counts, notes, the config."""
    c, t, d, a = plan.config, plan.config.train, plan.config.data, plan.config.adapter
    ppl = ", ".join(f"{NAMES[m]} {e.perplexity}" for m, e in plan.recipe.expected.items())
    lines = [
        f"{plan.recipe.name} ({NAMES[plan.method]}): {plan.recipe.title}",
        f"model     {c.model.model}; {', '.join(a.target_modules)}, rank {a.rank}, lora_alpha "
        f"{a.lora_alpha:g}, dropout {a.lora_dropout:g}; QPA chunk {c.qpa.chunk_size:,}, depth "
        f"{c.qpa.depth}, N = {plan.counts.n_qubits} qubits",
        f"data      {d.corpus} ({plan.train_rows:,} {d.text_unit}s) → test {d.eval_corpus}; "
        f"padded with {d.pad_with} to {d.max_length}, padding "
        f"{'counted' if t.perplexity == 'paper' else 'masked'} in loss and perplexity",
        f"training  {t.steps:,} steps of batch {t.batch_size} = "
        f"{t.steps * t.batch_size / plan.train_rows:.3g} epochs; AdamW lr "
        f"{t.lr:g}, {t.schedule} decay, warm-up {t.warmup_fraction:g}, clip {t.grad_clip:g}, "
        f"seed {t.seed}; test evaluation every {t.eval_every:,} steps",
        f"metric    exp(mean over test batches of {TEST_BATCH} of the mean token CE)",
        _counts_table(plan),
        f"expected test perplexity: {ppl}",
        *(f"- {n}" for n in (*plan.recipe.notes, *PROTOCOL_NOTES)),
        f"config:\n{c.to_json()}",
    ]
    return "\n".join(lines)


def format_result(result: dict) -> str:
    """The paper's figures beside the measured ones, as printed after a run."""
    expected, got = result["expected"][result["method"]], result["measured"]
    logged = dict(enumerate(expected["per_epoch"], 1))  # epoch → official log figure

    def num(value: Any, spec: str = ".4f") -> str:
        return "-" if value is None else format(value, spec)

    rows = [
        ("", "paper", "measured"),
        ("test perplexity (adapter, batches of 2)", num(expected["perplexity"], "g"),
         num(got["test_perplexity"])),
        ("test perplexity, last evaluation in training", "-",
         num(got["test_perplexity_in_training"])),
        *((f"  after epoch {e['epoch']} (official log)", num(logged.get(e["epoch"]), "g"),
           num(e["test_perplexity"])) for e in got["per_epoch"]),
        ("trainable parameters", num(expected["trainable_params"], ","),
         num(got["trainable_params"], ",")),
    ]  # fmt: skip
    head = f"{result['recipe']} ({NAMES[result['method']]}), run {result['run']}: {result['state']}"
    paper = result["expected"]
    ratio = _floor_percent(
        paper["qpa-lora"]["trainable_params"] / paper["lora"]["trainable_params"]
    )
    foot = "paper: " + ", ".join(
        f"{NAMES[m]} {e['perplexity']} with {e['trainable_params']:,} parameters"
        for m, e in paper.items()
    )
    return f"{head}\n{format_table(rows, right=(1, 2))}\n{foot} ({ratio})"


def list_recipes() -> str:
    """One line per recipe with its paper figures."""
    return "\n".join(
        f"{r.name:<12} {r.title}; paper test PPL "
        + ", ".join(f"{NAMES[m]} {e.perplexity}" for m, e in r.expected.items())
        for r in RECIPES.values()
    )
