"""Exact trainable-parameter counts for QPA-LoRA, its LoRA baseline and the adapted layers.

Everything is read from real modules: the base model is built from its config on the meta
device (no weights, milliseconds), wrapped with peft, and the LoRA shapes are taken from the
wrapped layers; the QPA generator is built on the meta device and its parameters counted.

>>> from qpa.config import AdapterConfig, QPAConfig
>>> c = count_params("gpt2-config", AdapterConfig(rank=4), QPAConfig(chunk_size=2048, depth=8))
>>> c.lora, c.qpa, c.n_qubits, c.n_chunks, f"{c.ratio:.2%}"
(204100, 106264, 7, 100, '52.06%')
"""

from __future__ import annotations

import contextlib
import functools
import gc
from dataclasses import asdict, dataclass

import torch

from qpa.config import AdapterConfig, QPAConfig
from qpa.generator import QPAGenerator


@dataclass(frozen=True)
class ParamCounts:
    """The numbers the app and `qpa count` show."""

    targets: tuple[str, ...]  # adapted layer names
    target_params: int  # parameters of the adapted layers themselves
    lora: int  # LoRA baseline trainable parameters = M, the values QPA generates
    chunk_size: int
    n_chunks: int
    n_qubits: int
    depth: int
    circuit: int
    mapping: int
    last_layer: int
    qpa: int

    @property
    def ratio(self) -> float:
        """QPA parameters as a fraction of LoRA's."""
        return self.qpa / self.lora

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}

    def of_layers(self, n: int) -> str:
        """`n` as a share of the adapted layers' own parameters."""
        return f"{n / self.target_params:.4%} of the layers"

    def table(self) -> list[tuple[str, str, str]]:
        """Rows (what, parameters, note) for display."""
        return [
            ("adapted layers", f"{self.target_params:,}", ", ".join(self.targets)),
            ("LoRA baseline", f"{self.lora:,}", self.of_layers(self.lora)),
            (
                "QPA circuit (N·L angles)",
                f"{self.circuit:,}",
                f"N = {self.n_qubits} qubits, L = {self.depth}",
            ),
            ("QPA mapping MLP", f"{self.mapping:,}", "all layers but the last"),
            (
                "QPA last layer",
                f"{self.last_layer:,}",
                f"{self.n_chunks} chunks × {self.chunk_size:,}",
            ),
            ("QPA total", f"{self.qpa:,}", f"{self.ratio:.2%} of LoRA, {self.of_layers(self.qpa)}"),
        ]


@functools.lru_cache(maxsize=32)
def lora_layout(
    model: str, target_modules: tuple[str, ...], rank: int
) -> tuple[tuple[str, ...], int, int]:
    """(targets, their parameter count, LoRA parameter count) for a named model, on meta."""
    from qpa.models import build_model

    with _young_garbage():
        base = build_model(model, device="meta")
        with torch.device("meta"):  # peft would allocate and initialise the LoRA matrices
            return _layout(base, AdapterConfig(target_modules=target_modules, rank=rank))


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


def _layout(base: torch.nn.Module, adapter: AdapterConfig) -> tuple[tuple[str, ...], int, int]:
    from qpa.tuner import lora_slots, resolve_targets, wrap_lora

    targets = tuple(resolve_targets(base, adapter.target_modules))
    modules = dict(base.named_modules())
    target_params = sum(p.numel() for t in targets for p in modules[t].parameters())
    lora = sum(s.numel for s in lora_slots(wrap_lora(base, adapter)))
    return targets, target_params, lora


def count_params(
    model: str | torch.nn.Module, adapter: AdapterConfig, qpa: QPAConfig
) -> ParamCounts:
    """Exact counts for `model` (a name, or a module that is wrapped in place) with LoRA and QPA."""
    if isinstance(model, str):
        targets, target_params, lora = lora_layout(model, adapter.target_modules, adapter.rank)
    else:
        targets, target_params, lora = _layout(model, adapter)
    with torch.device("meta"):
        gen = QPAGenerator(lora, qpa)
    parts = gen.param_counts()
    return ParamCounts(
        targets=targets,
        target_params=target_params,
        lora=lora,
        chunk_size=qpa.chunk_size,
        n_chunks=gen.n_chunks,
        n_qubits=gen.n_qubits,
        depth=qpa.depth,
        circuit=parts["circuit"],
        mapping=parts["mapping"],
        last_layer=parts["last_layer"],
        qpa=parts["total"],
    )
