"""Design tab: from the QPA shape (model, targets, rank, chunk size, qubits, depth, MLP) to the
parameter table, the trade-off chart, the circuit drawing and its probabilities, on every change.

Counting never loads weights: `qpa.counts.count_params` reads LoRA shapes from the model built on
the meta device (cached per model, targets and rank), so one update takes milliseconds.

>>> view = design_view("gpt2-config", "lm_head", 4, 2048, 7, 8, "32,64,128,128,64,32,32")
>>> view.counts.qpa, view.counts.lora, f"{view.counts.ratio:.2%}"
(106264, 204100, '52.06%')
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Any

import gradio as gr
import torch

from app import plots
from app.circuit_svg import circuit_svg
from app.handlers.common import api_errors, as_int, as_ints, as_names, guarded
from qpa import (
    AdapterConfig,
    ParamCounts,
    QPAConfig,
    build_model,
    circuit_probs,
    count_params,
    field_help,
    postprocess,
    qubits_needed,
)

FIELDS = (
    "model",
    "target_modules",
    "rank",
    "chunk_size",
    "n_qubits",
    "depth",
    "hidden_sizes",
    "entangler",
)
PROBS_BUDGET = 2**16  # draw the probabilities live when 2^N · L is at most this
PROBS_SEED = 0
TABLE_HEADERS = ["", "parameters", "note"]
MAX_CHUNK = field_help(QPAConfig)["chunk_size"]["max"]


@dataclass(frozen=True)
class DesignView:
    counts: ParamCounts
    chunk_size: int
    n_qubits: int
    table: list[list[str]]
    headline: str  # HTML
    tradeoff: Any  # plotly Figure
    circuit: str  # SVG
    probs: Any  # plotly Figure


def configs(
    model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler="ladder"
):
    """Validated (model name, AdapterConfig, QPAConfig) from the form's raw values."""
    model = (model or "").strip()
    if not model:
        raise ValueError("`model` is empty; pick a preset or type a Hub id.")
    adapter = AdapterConfig(target_modules=as_names(target_modules), rank=as_int("rank", rank))
    qpa = QPAConfig(
        chunk_size=as_int("chunk_size", chunk_size),
        n_qubits=as_int("n_qubits", n_qubits),
        depth=as_int("depth", depth),
        hidden_sizes=as_ints("hidden_sizes", hidden_sizes),
        entangler=entangler or "ladder",
    )
    if not adapter.target_modules:
        raise ValueError("`target_modules` is empty; choose at least one layer (e.g. lm_head).")
    return model, adapter, qpa


def chunk_for_qubits(n_values: int, n_qubits: int) -> int:
    """The smallest power-of-two chunk size whose 2^N chunks hold `n_values` weights.

    >>> chunk_for_qubits(204_100, 7), chunk_for_qubits(204_100, 8)
    (2048, 1024)
    """
    return 1 << max(0, math.ceil(math.log2(math.ceil(n_values / 2**n_qubits))))


def linked(model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler, lead):
    """(chunk_size, n_qubits) after a change: `lead` is the control the user moved.

    ``chunk``: qubits become the fewest that fit; ``qubits``: the chunk size becomes the smallest
    power of two that fits; anything else: qubits rise to the minimum if they no longer fit.
    """
    model, adapter, qpa = configs(
        model, target_modules, rank, chunk_size, 0, depth, hidden_sizes, entangler
    )
    lora = count_params(model, adapter, qpa).lora
    n = as_int("n_qubits", n_qubits)
    if lead == "qubits":
        if not 1 <= n <= 24:
            raise ValueError(f"`n_qubits` = {n} must be between 1 and 24.")
        return chunk_for_qubits(lora, n), n
    need = qubits_needed(lora, qpa.chunk_size)
    if need > 24:
        raise ValueError(
            f"`chunk_size` = {qpa.chunk_size:,} would need {need} qubits for {lora:,} LoRA weights; "
            f"the simulator allows 24: use a chunk size ≥ {chunk_for_qubits(lora, 24):,}."
        )
    return qpa.chunk_size, need if lead == "chunk" else max(n, need)


@functools.lru_cache(maxsize=256)
def _view(model, targets, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler) -> DesignView:
    model, adapter, qpa = configs(
        model, targets, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler
    )
    counts = count_params(model, adapter, qpa)
    return DesignView(
        counts=counts,
        chunk_size=qpa.chunk_size,
        n_qubits=counts.n_qubits,
        table=[list(row) for row in counts.table()],
        headline=headline_html(counts),
        tradeoff=_tradeoff(model, adapter, qpa, counts),
        circuit=circuit_svg(counts.n_qubits, qpa.depth, qpa.entangler),
        probs=_probs(counts.n_qubits, qpa, counts.n_chunks),
    )


def design_view(
    model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler="ladder"
):
    """Everything the Design tab shows for one set of values (cached; ValueError if invalid)."""
    return _view(
        model,
        ",".join(as_names(target_modules)),
        rank,
        chunk_size,
        n_qubits,
        depth,
        ",".join(as_names(hidden_sizes)),
        entangler,
    )


def _tradeoff(model: str, adapter: AdapterConfig, qpa: QPAConfig, counts: ParamCounts):
    """The trade-off chart: the sweep, with the current choice on it (its real total)."""
    points = list(_sweep(model, adapter, qpa.replace(chunk_size=1, n_qubits=0), counts.lora))
    if all(size != qpa.chunk_size for size, _, _ in points):
        points = sorted([*points, (qpa.chunk_size, counts.qpa, counts.n_qubits)])
    points = [
        (s, counts.qpa, counts.n_qubits) if s == qpa.chunk_size else (s, q, n) for s, q, n in points
    ]
    return plots.tradeoff_figure(points, qpa.chunk_size, counts.lora)


@functools.lru_cache(maxsize=64)
def _sweep(model: str, adapter: AdapterConfig, qpa: QPAConfig, lora: int) -> tuple:
    """(chunk_size, QPA parameters, qubits) at power-of-two chunk sizes, fewest qubits each."""
    lo = max(16, chunk_for_qubits(lora, 20))  # at most 20 qubits on the chart
    hi = min(max(lo, 1 << math.ceil(math.log2(lora))), MAX_CHUNK)
    points = []
    for k in range(lo.bit_length() - 1, hi.bit_length()):
        c = count_params(model, adapter, qpa.replace(chunk_size=1 << k))
        points.append((1 << k, c.qpa, c.n_qubits))
    return tuple(points)


@contextlib.contextmanager
def _one_thread():
    """Tiny simulations run fastest on one thread (no OpenMP hand-off on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _probs(n_qubits: int, qpa: QPAConfig, n_chunks: int):
    if 2**n_qubits * qpa.depth > PROBS_BUDGET:
        return plots.message_figure(
            f"2^{n_qubits} = {2**n_qubits:,} states × L = {qpa.depth}: too many to draw live.\n"
            "Training simulates them exactly; lower the qubits or depth to see them here."
        )
    generator = torch.Generator().manual_seed(PROBS_SEED)
    angles = (torch.rand(qpa.depth, n_qubits, generator=generator) * 2 - 1) * math.pi  # (L, N)
    with torch.no_grad(), _one_thread():
        probs = circuit_probs(angles, qpa.entangler)  # (2^N,)
        x = postprocess(probs, qpa.gamma, qpa.beta, qpa.alpha)  # (2^N,)
    return plots.probs_figure(probs.tolist(), x.tolist(), n_chunks)


def headline_html(c: ParamCounts) -> str:
    """The counts in one glance: QPA vs LoRA and the circuit shape."""
    stat = (
        '<div class="qpa-stat"><span class="qpa-num">{}</span><span class="qpa-lbl">{}</span></div>'
    )
    return (
        '<div class="qpa-stats">'
        + "".join(
            (
                stat.format(f"{c.qpa:,}", "QPA trainable parameters"),
                stat.format(f"{c.lora:,}", "LoRA baseline (values QPA generates)"),
                stat.format(f"{c.ratio:.2%}", "QPA / LoRA"),
                stat.format(
                    f"{c.n_qubits} × {c.depth}",
                    f"qubits N × depth L, {c.n_chunks:,} chunks of {c.chunk_size:,}",
                ),
            )
        )
        + "</div>"
    )


@functools.lru_cache(maxsize=16)
def target_choices(model: str) -> list[str]:
    """Adaptable layer names of `model` (suffixes of its Linear/Conv1D layers), lm_head first."""
    names = set()
    for name, module in build_model(model, device="meta").named_modules():
        if type(module).__name__ in ("Linear", "Conv1D") and name:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names, key=lambda n: (n != "lm_head", n))


# -- event handlers (the tab wires these) ----------------------------------------------------------

N_OUTPUTS = 7  # chunk_size, n_qubits, table, headline, tradeoff, circuit, probs


def _outputs(values: tuple, lead: str) -> tuple:
    chunk, n = linked(*values, lead)
    view = design_view(values[0], values[1], values[2], chunk, n, *values[5:])
    return chunk, n, view.table, view.headline, view.tradeoff, view.circuit, view.probs


@guarded(N_OUTPUTS)
def on_change(model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler):
    """Depth, MLP or entangler moved: the qubits stay (raised to the minimum if they must)."""
    return _outputs(
        (model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler), "other"
    )


@guarded(N_OUTPUTS)
def on_chunk(model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler):
    """Chunk size, rank, targets or model moved: qubits follow (the fewest that fit)."""
    return _outputs(
        (model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler), "chunk"
    )


@guarded(N_OUTPUTS)
def on_qubits(model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler):
    """Qubits moved: the chunk size follows (the smallest power of two that fits)."""
    return _outputs(
        (model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes, entangler),
        "qubits",
    )


@guarded(1)
def on_model(model, target_modules):
    """A new base model: offer its layers, keeping the chosen ones it also has."""
    choices = target_choices((model or "").strip())
    keep = [t for t in as_names(target_modules) if t in choices] or choices[:1]
    return gr.update(choices=choices, value=keep)


@api_errors
def count_api(
    model: str,
    target_modules: str = "lm_head",
    rank: int = 4,
    chunk_size: int = 2048,
    n_qubits: int = 0,
    depth: int = 8,
    hidden_sizes: str = "32,64,128,128,64,32,32",
) -> dict:
    """Exact trainable-parameter counts (QPA parts, LoRA, adapted layers, ratio) as a dict."""
    model, adapter, qpa = configs(
        model, target_modules, rank, chunk_size, n_qubits, depth, hidden_sizes
    )
    return dict(_counts(model, adapter, qpa))


@functools.lru_cache(maxsize=1024)
def _counts(model: str, adapter: AdapterConfig, qpa: QPAConfig) -> tuple:
    """`count_params` as a dict's items, cached: the API answers repeated shapes at once."""
    return tuple(count_params(model, adapter, qpa).to_dict().items())
