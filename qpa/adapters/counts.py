"""Exact trainable-parameter counts for QPA-LoRA, its LoRA baseline and the adapted layers.

Everything is read from real modules: the base model is built from its config on the meta
device (no weights, milliseconds), wrapped with peft, and the adapter's shapes are taken from
the wrapped layers; the `QPALoRA` of the config (generators, start scales, DoRA magnitudes) is
built on the meta device and its parameters counted.

>>> from qpa.config import PAPER_MAPPING, AdapterConfig, QPAConfig
>>> paper = QPAConfig(chunk_size=2048, depth=8, **PAPER_MAPPING)  # the paper's shape
>>> c = count_params("gpt2-config", AdapterConfig(rank=4), paper)
>>> c.lora_params, c.qpa_params, c.n_qubits, c.n_chunks, f"{c.ratio:.2%}"
(204100, 106264, 7, 100, '52.06%')
"""

from __future__ import annotations

import contextlib
import functools
import gc
from dataclasses import asdict, dataclass

import torch

from qpa.config import AdapterConfig, QPAConfig, field_help
from qpa.generator.qpa_generator import QPAGenerator, chunk_for_qubits

_QPA_FIELDS = field_help(QPAConfig)
MAX_CHUNK = _QPA_FIELDS["chunk_size"]["max"]
MAX_QUBITS = _QPA_FIELDS["n_qubits"]["max"]
JSON_KEYS = {"qpa_params": "qpa", "lora_params": "lora"}  # `ParamCounts.to_dict`'s names


@dataclass(frozen=True)
class ParamCounts:
    """The numbers the app and `qpa count` show; QPA parts are sums over the generators."""

    targets: tuple[str, ...]  # adapted layer names
    target_params: int  # parameters of the adapted layers themselves
    lora_params: int  # the LoRA (DoRA with `use_dora`) baseline's trainable parameters
    dora: bool  # `use_dora`: the baseline is DoRA and QPA generates DoRA's LoRA matrices
    n_values: int  # values QPA generates (M): the LoRA matrices, and generated magnitudes
    max_values: int  # values of the largest generator (what its chunks must hold)
    n_generators: int
    chunk_size: int
    n_chunks: int  # chunks of all generators
    n_qubits: int  # of the largest generator
    max_rank: int  # rank ceiling of the largest generator's (n_chunks × chunk_size) matrix
    depth: int
    circuit: int
    mapping: int
    last_layer: int
    scales: int  # `zero-scale` start scalars
    magnitude: int  # DoRA magnitudes trained directly next to QPA
    qpa_params: int  # QPA's trainable parameters, all of the above

    @property
    def ratio(self) -> float:
        """QPA parameters as a fraction of LoRA's."""
        return self.qpa_params / self.lora_params

    def to_dict(self) -> dict:
        """The counts as JSON (`qpa count --json`, the app's API): the totals keep their short
        keys ``qpa`` and ``lora``."""
        return {JSON_KEYS.get(k, k): v for k, v in asdict(self).items()} | {"ratio": self.ratio}

    def of_layers(self, n: int) -> str:
        """`n` as a share of the adapted layers' own parameters."""
        return f"{n / self.target_params:.4%} of the layers"

    def table(self) -> list[tuple[str, str, str]]:
        """Rows (what, parameters, note) for display; parts a config lacks are left out."""
        many = self.n_generators > 1
        qubits = f"N ≤ {self.n_qubits} qubits" if many else f"N = {self.n_qubits} qubits"
        gens = f", {self.n_generators} generators" if many else ""
        baseline = "DoRA baseline" if self.dora else "LoRA baseline"
        rows = [
            ("adapted layers", f"{self.target_params:,}", ", ".join(self.targets)),
            (baseline, f"{self.lora_params:,}", self.of_layers(self.lora_params)),
            ("QPA circuit (N·L angles)", f"{self.circuit:,}", f"{qubits}, L = {self.depth}{gens}"),
            ("QPA mapping MLP", f"{self.mapping:,}", "all layers but the last"),
            ("QPA last layer", f"{self.last_layer:,}",
             f"{self.n_chunks} chunks × {self.chunk_size:,}, rank ≤ {self.max_rank}"),
        ]  # fmt: skip
        if self.scales:
            rows.append(("QPA start scales", f"{self.scales:,}", "zero-scale: B, magnitude"))
        if self.magnitude:
            rows.append(("DoRA magnitudes", f"{self.magnitude:,}", "trained next to QPA"))
        total = f"{self.ratio:.2%} of {baseline.split()[0]}, {self.of_layers(self.qpa_params)}"
        return [*rows, ("QPA total", f"{self.qpa_params:,}", total)]


@dataclass(frozen=True)
class Layout:
    """What counting reads from the peft-wrapped model."""

    targets: tuple[str, ...]
    target_params: int
    slots: tuple  # qpa.tuner.Slot, per layer: lora_B, lora_A (and DoRA's magnitude)


@functools.lru_cache(maxsize=32)
def lora_layout(
    model: str, target_modules: tuple[str, ...], rank: int, use_dora: bool = False
) -> Layout:
    """The adapted layers and adapter slots for a named model, read on the meta device."""
    from qpa.models.loading import build_model

    adapter = AdapterConfig(target_modules=target_modules, rank=rank, use_dora=use_dora)
    with _young_garbage():
        base = build_model(model, device="meta")
        with torch.device("meta"):  # peft would allocate and initialise the LoRA matrices
            return _layout(base, adapter)


@contextlib.contextmanager
def _young_garbage():
    """Keep a layout's objects (tens of thousands, partly cyclic) out of the old generation.

    With the collector paused while the model is built and wrapped, its garbage is still young
    afterwards, and a young collection (a few ms) frees it. Otherwise it piles up in the old
    generation until a full collection, over every object in the process, adds ~300 ms to
    every few counts in an interactive session.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect(1)


def _layout(base: torch.nn.Module, adapter: AdapterConfig) -> Layout:
    from qpa.adapters.qpa_lora import lora_slots, resolve_targets, wrap_lora

    targets = tuple(resolve_targets(base, adapter.target_modules))
    modules = dict(base.named_modules())
    target_params = sum(p.numel() for t in targets for p in modules[t].parameters())
    return Layout(targets, target_params, lora_slots(wrap_lora(base, adapter)))


@functools.lru_cache(maxsize=256)
def _meta_generator(n_values: int, config: QPAConfig) -> QPAGenerator:
    """One meta-device generator per size and config, shared by the layers of that size."""
    with torch.device("meta"):
        return QPAGenerator(n_values, config)


def count_params(
    model: str | torch.nn.Module, adapter: AdapterConfig, qpa: QPAConfig
) -> ParamCounts:
    """Exact counts for `model` (a name, or a module that is wrapped in place) with LoRA and QPA.

    The QPA side is the real `QPALoRA` for this config, built on the meta device.
    """
    from qpa.adapters.qpa_lora import QPALoRA

    if isinstance(model, str):
        layout = lora_layout(model, adapter.target_modules, adapter.rank, adapter.use_dora)
    else:
        layout = _layout(model, adapter)
    with torch.device("meta"):
        tuner = QPALoRA(layout.slots, qpa, adapter.dora_magnitude, make_generator=_meta_generator)
    parts, gens = tuner.param_counts(), list(tuner.generators)
    largest = max(gens, key=lambda g: g.n_values)
    return ParamCounts(
        targets=layout.targets,
        target_params=layout.target_params,
        lora_params=sum(s.numel for s in layout.slots),
        dora=adapter.use_dora,
        n_values=tuner.n_values,
        max_values=largest.n_values,
        n_generators=len(gens),
        chunk_size=qpa.chunk_size,
        n_chunks=sum(g.n_chunks for g in gens),
        n_qubits=largest.n_qubits,
        max_rank=largest.max_rank,
        depth=qpa.depth,
        circuit=parts["circuit"],
        mapping=parts["mapping"],
        last_layer=parts["last_layer"],
        scales=parts["scales"],
        magnitude=parts["magnitude"],
        qpa_params=parts["total"],
    )


def largest_generator(model: str, adapter: AdapterConfig, qpa: QPAConfig) -> int:
    """Values the largest generator emits (all of them when `layers` is shared): what its
    chunks must hold, whatever the chunk size. Counted at the biggest chunk size, so one qubit
    or few suffice and no qubit limit is hit.

    >>> largest_generator("gpt2-config", AdapterConfig(rank=4), QPAConfig(chunk_size=64))
    204100
    """
    roomy = qpa.replace(chunk_size=MAX_CHUNK, n_qubits=0, noise=0.0, shots=0)
    return count_params(model, adapter, roomy).max_values


def qubit_choices(n_values: int, around: int, spread: int = 3) -> list[tuple[int, int]]:
    """(qubits N, the smallest power-of-two chunk size that fits) for N near `around`.

    >>> qubit_choices(204_100, 7, spread=1)
    [(6, 4096), (7, 2048), (8, 1024)]
    """
    low, high = max(1, around - spread), min(MAX_QUBITS, around + spread)
    return [(n, chunk_for_qubits(n_values, n)) for n in range(low, high + 1)]
