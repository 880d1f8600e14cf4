"""Attach LoRA to any causal LM through peft, and let QPA generate its weights.

`wrap_lora` resolves target names and wraps the model with peft; `QPALoRA` then removes every
lora_A/lora_B Parameter and, before each forward, writes slices of one generated vector in
their place. The layout (names, shapes, offsets) is read from the peft-wrapped model, so counts
and slices can never drift from what peft builds.

>>> import torch
>>> from transformers import LlamaConfig, LlamaForCausalLM
>>> from qpa.config import AdapterConfig, QPAConfig
>>> base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
>>> model, qpa = build_adapter(base, AdapterConfig(rank=2), QPAConfig(chunk_size=32, depth=2))
>>> [s.name for s in qpa.slots], qpa.n_values
(['lm_head.lora_B', 'lm_head.lora_A'], 160)
>>> model(torch.tensor([[1, 2, 3]])).logits.shape
torch.Size([1, 3, 64])
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from qpa.config import AdapterConfig, QPAConfig
from qpa.generator import QPAGenerator

ADAPTER = "default"


def adaptable_layers(model: nn.Module) -> list[str]:
    """Names of the Linear (and GPT-2 Conv1D) layers LoRA can adapt."""
    from transformers.pytorch_utils import Conv1D

    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D)) and n]


def _summarise(names: list[str]) -> str:
    """Distinct layer names with layer indices collapsed, e.g. `model.layers.*.mlp.up_proj`."""
    seen = dict.fromkeys(re.sub(r"\.\d+\.", ".*.", n) for n in names)
    return ", ".join(seen)


def resolve_targets(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """Full names of the layers matched by exact name, name suffix or regular expression."""
    layers = adaptable_layers(model)
    if not patterns:
        raise ValueError("`target_modules` is empty; name at least one layer, e.g. `lm_head`.")
    chosen: list[str] = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error:
            regex = None
        hits = [
            n
            for n in layers
            if n == pattern
            or n.endswith("." + pattern)
            or (regex is not None and regex.fullmatch(n))
        ]
        if not hits:
            raise ValueError(
                f"`target_modules` entry {pattern!r} matches no Linear layer of this model; "
                f"its Linear layers are: {_summarise(layers)}."
            )
        chosen += [n for n in hits if n not in chosen]
    return chosen


def wrap_lora(model: nn.Module, config: AdapterConfig):
    """Wrap `model` with a peft LoRA adapter on the configured targets (all else frozen)."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    if not hasattr(model, "get_output_embeddings") or model.get_output_embeddings() is None:
        raise ValueError(
            f"`model` {type(model).__name__} is not a causal language model (no output head)."
        )
    targets = resolve_targets(model, config.target_modules)
    modules = dict(model.named_modules())
    kinds = {isinstance(modules[t], Conv1D) for t in targets}
    if len(kinds) > 1:
        raise ValueError(
            "`target_modules` mixes Conv1D and Linear layers; adapt one kind at a time."
        )
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        fan_in_fan_out=kinds == {True},
    )
    with warnings.catch_warnings():  # tied lm_head: merging is handled by qpa.export
        warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*")
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, lora, adapter_name=ADAPTER)


@dataclass(frozen=True)
class Slot:
    """One LoRA matrix inside the generated vector."""

    name: str  # e.g. "lm_head.lora_B"
    module: nn.Module
    shape: tuple[int, int]
    offset: int

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


def lora_slots(peft_model: nn.Module) -> list[Slot]:
    """Every LoRA matrix of the wrapped model, up (B) before down (A) per layer, as in the paper."""
    from peft.tuners.lora import LoraLayer

    slots, offset = [], 0
    for name, layer in peft_model.base_model.model.named_modules():
        if not isinstance(layer, LoraLayer) or ADAPTER not in layer.lora_A:
            continue
        for part in ("lora_B", "lora_A"):
            module = getattr(layer, part)[ADAPTER]
            shape = tuple(module.weight.shape)
            slots.append(Slot(f"{name}.{part}", module, shape, offset))
            offset += shape[0] * shape[1]
    return slots


class QPALoRA(nn.Module):
    """The trainable part of a QPA-LoRA model: a generator whose output *is* the LoRA weights."""

    def __init__(self, peft_model: nn.Module, config: QPAConfig):
        super().__init__()
        self.slots = lora_slots(peft_model)
        self.n_values = sum(s.numel for s in self.slots)
        self.generator = QPAGenerator(self.n_values, config)
        for slot in self.slots:
            del slot.module._parameters["weight"]  # the generator now owns these weights
        self.materialize()
        peft_model.register_forward_pre_hook(self._before_forward)

    def _before_forward(self, *_) -> None:
        self.materialize()  # a pre-hook's return value would replace the inputs

    def materialize(self) -> torch.Tensor:
        """Generate the vector and write its slices into the LoRA layers; returns the vector."""
        vector = self.generator()  # (M,)
        parts = vector.split([s.numel for s in self.slots])  # one backward node, not one per slot
        for s, part in zip(self.slots, parts, strict=True):
            s.module.weight = part.view(s.shape)
        return vector

    def lora_state(self) -> dict[str, torch.Tensor]:
        """The current LoRA weights as detached tensors keyed by peft's parameter names."""
        with torch.no_grad():
            vector = self.generator()
        return {
            f"base_model.model.{s.name}.{ADAPTER}.weight": vector[s.offset : s.offset + s.numel]
            .view(s.shape)
            .clone()
            for s in self.slots
        }


def build_adapter(model: nn.Module, adapter: AdapterConfig, qpa: QPAConfig | None = None):
    """Wrap `model` for `adapter.method`; returns (peft_model, QPALoRA or None)."""
    peft_model = wrap_lora(model, adapter)
    if adapter.method == "lora":
        return peft_model, None
    return peft_model, QPALoRA(peft_model, qpa or QPAConfig())
