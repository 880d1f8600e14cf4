"""Design tab: from the QPA shape (model, targets, rank, chunk size, qubits, depth, MLP and the
advanced options) to the parameter table, the rank ceiling, the trade-off chart, the circuit
drawing and its probabilities, and the equivalent ``qpa count`` command, on every change.

Counting never loads weights: `qpa.adapters.counts.count_params` reads LoRA shapes from the model built on
the meta device (cached per model, targets and rank), so one update takes milliseconds.

>>> paper = {"hidden_sizes": "32,64,128,128,64,32,32", "activation": "none",
...          "fourier_features": 0}  # the paper's mapping MLP
>>> view = design_view({"model": "gpt2-config", "n_qubits": 7, **paper})
>>> view.counts.qpa_params, view.counts.lora_params, f"{view.counts.ratio:.2%}"
(106264, 204100, '52.06%')
"""

from __future__ import annotations

import functools
import html
import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app import plots
from app.circuit_svg import circuit_svg
from app.glossary import design_explainer
from app.handlers import shape
from app.handlers.common import USER_ERRORS, as_names, check_model, guarded
from app.handlers.shape import CUSTOM, MAX_CHUNK, configs, form, key, linked, variant_values
from app.state import Studio
from qpa import (
    AdapterConfig,
    ParamCounts,
    QPAConfig,
    RunConfig,
    adaptable_suffixes,
    chunk_for_qubits,
    config_to_argv,
    count_params,
    preview_probs,
)

PROBS_BUDGET = 2**16  # draw the probabilities live when 2^N · L is at most this
NOISY_BUDGET = 2**21  # and, under noise, when 4^N · L is (a density matrix: ~40 ms at most)
PROBS_SEED = 0
TABLE_HEADERS = ["", "parameters", "note"]


@dataclass(frozen=True)
class DesignView:
    counts: ParamCounts
    rank_ceiling: int  # rank bound of the largest generator's chunk matrix
    chunk_size: int
    n_qubits: int
    table: list[list[str]]
    headline: str  # HTML
    tradeoff: Any  # plotly Figure
    circuit: str  # SVG
    probs: Any  # plotly Figure
    command: str  # the same count from a terminal
    explain: str  # HTML: what the numbers mean, in plain words


@functools.lru_cache(maxsize=256)
def _view(values: tuple) -> DesignView:
    model, adapter, qpa = configs(dict(zip(shape.FIELDS, values, strict=True)))
    counts = count_params(model, adapter, qpa)
    ceiling = counts.max_rank
    return DesignView(
        counts=counts,
        rank_ceiling=ceiling,
        chunk_size=qpa.chunk_size,
        n_qubits=counts.n_qubits,
        table=[list(row) for row in counts.table()],
        headline=headline_html(counts, ceiling, adapter.use_dora),
        tradeoff=_tradeoff(model, adapter, qpa, counts),
        circuit=circuit_svg(counts.n_qubits, qpa.depth, qpa.entangler),
        probs=_probs(counts.n_qubits, qpa, math.ceil(counts.max_values / qpa.chunk_size)),
        command=count_command(model, adapter, qpa),
        explain=design_explainer(
            adapter.rank, counts.n_qubits, qpa.chunk_size, qpa.depth, counts.qpa_params,
            counts.lora_params, counts.ratio, ceiling, counts.n_values, counts.n_chunks,
        ),
    )


def design_view(values: Mapping[str, Any]) -> DesignView:
    """Everything the Design tab shows for the form (cached; ValueError if invalid)."""
    return _view(key(values))


def count_command(model: str, adapter: AdapterConfig, qpa: QPAConfig) -> str:
    """The ``python -m qpa count`` line that prints these counts in a terminal."""
    config = RunConfig(model={"model": model}, adapter=adapter, qpa=qpa)
    return shlex.join(["python", "-m", "qpa", "count", *config_to_argv(config)])


def _tradeoff(model: str, adapter: AdapterConfig, qpa: QPAConfig, counts: ParamCounts):
    """The trade-off chart: the sweep, with the current choice on it (its real total)."""
    plain = qpa.replace(chunk_size=1, n_qubits=0, shots=0, noise=0.0)  # neither changes counts
    points = list(_sweep(model, adapter, plain, counts.max_values))
    mine = (qpa.chunk_size, counts.qpa_params, counts.n_qubits)
    if all(size != qpa.chunk_size for size, _, _ in points):
        points = sorted([*points, mine])
    points = [mine if s == qpa.chunk_size else (s, q, n) for s, q, n in points]
    paper = plots.paper_points(model, adapter.target_modules, adapter.rank, adapter.use_dora)
    return plots.tradeoff_figure(points, qpa.chunk_size, counts.lora_params, paper)


@functools.lru_cache(maxsize=64)
def _sweep(model: str, adapter: AdapterConfig, qpa: QPAConfig, n_values: int) -> tuple:
    """(chunk_size, QPA parameters, qubits) at power-of-two chunk sizes, fewest qubits each;
    `n_values` is what the largest generator emits."""
    lo = max(16, chunk_for_qubits(n_values, 20))  # at most 20 qubits on the chart
    hi = min(max(lo, 1 << math.ceil(math.log2(n_values))), MAX_CHUNK)
    points = []
    for k in range(lo.bit_length() - 1, hi.bit_length()):
        c = count_params(model, adapter, qpa.replace(chunk_size=1 << k))
        points.append((1 << k, c.qpa_params, c.n_qubits))
    return tuple(points)


def _too_big(n_qubits: int, qpa: QPAConfig) -> str:
    """Why the probabilities are not drawn live, or "" when they are."""
    states, depth = 2**n_qubits, qpa.depth
    if states * depth > PROBS_BUDGET:
        return f"2^{n_qubits} = {states:,} states × L = {depth}: too many to draw live."
    if qpa.noise and states**2 * depth > NOISY_BUDGET:
        return f"A noisy {n_qubits}-qubit density matrix (4^{n_qubits} entries) × L = {depth}."
    return ""


def _probs(n_qubits: int, qpa: QPAConfig, n_chunks: int):
    """The probabilities the MLP reads for seeded random angles (noisy and/or sampled as the
    config says, next to the exact ones then), and their post-processed x."""
    reason = _too_big(n_qubits, qpa)
    if reason:
        return plots.message_figure(
            f"{reason}\nTraining simulates them; lower the qubits or depth to see them here."
        )
    probs, x, exact = preview_probs(n_qubits, qpa, PROBS_SEED)
    return plots.probs_figure(probs, x, n_chunks, exact, _measured(qpa))


def _measured(qpa: QPAConfig) -> str:
    """How the probabilities the MLP reads are obtained, for the chart's legend."""
    parts = [f"noise p = {qpa.noise:g}"] if qpa.noise else []
    parts += [f"{qpa.shots:,} shots"] if qpa.shots else []
    return ", ".join(parts)


def headline_html(c: ParamCounts, ceiling: int, use_dora: bool = False) -> str:
    """The counts in one glance: QPA vs LoRA, the circuit shape and the rank ceiling."""
    stat = (
        '<div class="qpa-stat"><span class="qpa-num">{}</span><span class="qpa-lbl">{}</span></div>'
    )
    base = "DoRA" if use_dora else "LoRA"
    over = c.ratio > 1
    gens = f" ({c.n_generators} generators, the largest shown)" if c.n_generators > 1 else ""
    stats = (
        (f"{c.qpa_params:,}", "QPA trainable parameters"),
        (f"{c.lora_params:,}", f"{base} baseline ({c.n_values:,} values QPA generates)"),
        (f"{c.ratio:.2%}", f"QPA / {base}: QPA has MORE parameters than {base} here" if over
                           else f"QPA / {base}"),
        (f"{c.n_qubits} × {c.depth}", f"qubits N × depth L{gens}, {c.n_chunks:,} chunks"),
        (f"≤ {ceiling}", f"rank ceiling of the {math.ceil(c.max_values / c.chunk_size):,} × "
                         f"{c.chunk_size:,} chunk matrix, whatever is learnt"),
    )
    cards = [stat.format(*s) for s in stats]
    if over:
        cards[2] = cards[2].replace('"qpa-stat"', '"qpa-stat qpa-over"')
    return '<div class="qpa-stats">' + "".join(cards) + "</div>"


# -- event handlers (the tab wires these: a form of `shape.FIELDS` in, named views out) ------------


def _outputs(studio: Studio, values: Mapping[str, Any], lead: str) -> dict[str, Any]:
    """The linked chunk size and qubits and every view, by output name."""
    check_model(studio.caps.any_model, form(values)["model"])  # a demo reads no local folder
    chunk, n = linked(values, lead)
    view = design_view({**values, "chunk_size": chunk, "n_qubits": n})
    return {"chunk_size": chunk, "n_qubits": n, "table": view.table, "headline": view.headline,
            "tradeoff": view.tradeoff, "circuit": view.circuit, "probs": view.probs,
            "command": view.command, "explain": view.explain}  # fmt: skip


def on_refused(studio: Studio, values: dict[str, Any]) -> dict[str, Any]:
    """After each change (whose refusal the page shows as an error naming the field): while the
    form holds a refused value, every view says so instead of showing the old counts and
    command; nothing changes otherwise."""
    try:
        _outputs(studio, values, "other")
    except USER_ERRORS as e:
        message = str(e)
        note = f'<div class="qpa-refused">Not counted: {html.escape(message)}</div>'
        figure = plots.message_figure(f"Not drawn: {message}")
        return {"table": [], "headline": note, "tradeoff": figure, "circuit": "", "probs": figure,
                "command": f"# not run: {message}", "explain": note}  # fmt: skip
    return {}


@guarded
def on_change(studio: Studio, values: dict[str, Any]) -> dict[str, Any]:
    """Depth, MLP, entangler or an advanced option moved: the qubits stay (raised to the
    minimum if they must)."""
    return _outputs(studio, values, "other")


@guarded
def on_chunk(studio: Studio, values: dict[str, Any]) -> dict[str, Any]:
    """Chunk size, rank, targets, model or what is generated moved: qubits follow (the fewest
    that fit)."""
    return _outputs(studio, values, "chunk")


@guarded
def on_qubits(studio: Studio, values: dict[str, Any]) -> dict[str, Any]:
    """Qubits moved: the chunk size follows (the smallest power of two that fits)."""
    return _outputs(studio, values, "qubits")


@guarded
def on_variant(studio: Studio, values: dict[str, Any]) -> dict[str, Any]:
    """A variant picked (``variant``, with the form): its QPA fields (the other QPA fields at
    their defaults), the qubits following its chunk size, and the views. `custom` changes
    nothing."""
    values = dict(values)
    name = values.pop("variant")
    if name == CUSTOM:
        return {}
    fields = variant_values(name)
    return {**fields, **_outputs(studio, {**values, **fields}, "chunk")}


def on_model_typed(model) -> str:
    """Shown at once while a new model is looked up (a Hub id takes a moment)."""
    return f"Checking `{(model or '').strip()}`…"


def on_model(studio: Studio, model, target_modules, counted: str):
    """A new base model: offer its layers, keeping the chosen ones it also has. One that cannot
    be read (or, in a demo, is not a preset) puts the box back to `counted`, the model the
    counts show, so form and counts agree. Returns (targets, model box, status, counted model)."""
    try:
        name = check_model(studio.caps.any_model, model)
        choices = adaptable_suffixes(name)
    except USER_ERRORS as e:
        gr.Warning(str(e))
        return gr.skip(), counted, f"Kept `{counted}`: {e}", counted
    keep = [t for t in as_names(target_modules, "target_modules") if t in choices] or choices[:1]
    return gr.update(choices=choices, value=keep), gr.skip(), "", name


def on_dora(use_dora: bool):
    """DoRA switched: its magnitude and norm options mean something only with DoRA on."""
    return gr.update(interactive=bool(use_dora)), gr.update(interactive=bool(use_dora))


D = shape.DEFAULTS  # the API's defaults are the configs' (shape.HELP)


def count_api(studio: Studio) -> Callable[..., dict]:
    """The ``count_params`` API endpoint of `studio` (its typed signature is the API's)."""

    @guarded
    def count_params(
        model: str,
        target_modules: str = ",".join(D["target_modules"]),
        rank: int = D["rank"],
        chunk_size: int = D["chunk_size"],
        n_qubits: int = D["n_qubits"],
        depth: int = D["depth"],
        hidden_sizes: str = ",".join(map(str, D["hidden_sizes"])),
        entangler: str = D["entangler"],
        activation: str = D["activation"],
        fourier_features: int = D["fourier_features"],
        start: str = D["start"],
        layers: str = D["layers"],
        use_dora: bool = D["use_dora"],
        dora_magnitude: str = D["dora_magnitude"],
        dora_norm: str = D["dora_norm"],
    ) -> dict:
        """Exact trainable-parameter counts (QPA parts, LoRA, adapted layers, ratio, rank
        ceiling)."""
        given = dict(locals())  # the arguments by name (and `studio`, no field)
        check_model(studio.caps.any_model, model)
        return dict(_counts(*configs({k: v for k, v in given.items() if k in shape.FIELDS})))

    return count_params


@functools.lru_cache(maxsize=1024)
def _counts(model: str, adapter: AdapterConfig, qpa: QPAConfig) -> tuple:
    """`count_params` (and the rank ceiling) as a dict's items, cached: the API answers repeated
    shapes at once."""
    counts = count_params(model, adapter, qpa)
    return (*counts.to_dict().items(), ("rank_ceiling", counts.max_rank))
