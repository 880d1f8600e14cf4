"""Attach LoRA (or DoRA) to any causal LM through peft, and let QPA generate its weights.

`wrap_lora` resolves target names and wraps the model with peft; `lora_slots` reads the adapter's
layout (names, shapes) from the wrapped layers, so counts and slices never drift from what peft
builds. `QPALoRA` holds the generators, built from that layout alone: `attach` then removes
every generated Parameter from the peft model and, before each forward, writes the generated
tensors in their place.

`layers`: one generator emits every slot (`shared`, up (B) before down (A) per layer, as in the
paper) or each adapted layer has its own (`per-layer`). `start`: a tensor that is zero in a model
equal to the base (B; the change of a generated DoRA magnitude) is used as generated (`random`),
times a trainable scalar that starts at 0 (`zero-scale`), or minus its generated value at
`attach`, a frozen shift (`offset`). A generated magnitude is peft's initial one (‖W‖ per output
row) plus the generated values.

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

import functools
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from qpa.config import AdapterConfig, QPAConfig
from qpa.generator.qpa_generator import QPAGenerator

ADAPTER = "default"


def adaptable_layers(model: nn.Module) -> list[str]:
    """Names of the Linear (and GPT-2 Conv1D) layers LoRA can adapt."""
    from transformers.pytorch_utils import Conv1D

    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D)) and n]


@functools.lru_cache(maxsize=16)
def adaptable_suffixes(model: str) -> list[str]:
    """The last name part of every layer LoRA can adapt in model `model` (built on the meta
    device: no weights), lm_head first: the choices a target picker offers.

    >>> adaptable_suffixes("gpt2-config")
    ['lm_head', 'c_attn', 'c_fc', 'c_proj']
    """
    from qpa.models.loading import build_model

    names = {n.rsplit(".", 1)[-1] for n in adaptable_layers(build_model(model, device="meta"))}
    return sorted(names, key=lambda n: (n != "lm_head", n))


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
        use_dora=config.use_dora,
    )
    with warnings.catch_warnings():  # tied lm_head: merging is handled by qpa.export
        warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*")
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, lora, adapter_name=ADAPTER)


PARTS = {"lora_B": "lora_B", "lora_A": "lora_A", "magnitude": "lora_magnitude_vector"}


@dataclass(frozen=True)
class Slot:
    """One adapter tensor of one adapted layer: a LoRA matrix or DoRA's magnitude vector."""

    layer: str  # e.g. "lm_head"
    part: str  # "lora_B", "lora_A" or "magnitude"
    shape: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.part}"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def key(self) -> str:
        """The tensor's parameter name in the peft model."""
        return f"base_model.model.{self.layer}.{PARTS[self.part]}.{ADAPTER}.weight"

    @property
    def starts_at_zero(self) -> bool:
        """True when the tensor (a magnitude: its change) is 0 in a model equal to the base."""
        return self.part != "lora_A"

    def owner(self, peft_model: nn.Module) -> nn.Module:
        """The module whose `weight` holds this tensor."""
        layer = peft_model.base_model.model.get_submodule(self.layer)
        return getattr(layer, PARTS[self.part])[ADAPTER]


def lora_slots(peft_model: nn.Module) -> tuple[Slot, ...]:
    """Every adapter tensor of the wrapped model; per layer up (B) before down (A), as in the
    paper, then DoRA's magnitude."""
    from peft.tuners.lora import LoraLayer

    slots = []
    for name, layer in peft_model.base_model.model.named_modules():
        if not isinstance(layer, LoraLayer) or ADAPTER not in layer.lora_A:
            continue
        for part, attr in PARTS.items():
            if ADAPTER in getattr(layer, attr):
                slots.append(Slot(name, part, tuple(getattr(layer, attr)[ADAPTER].weight.shape)))
    return tuple(slots)


def group_slots(slots: tuple[Slot, ...], layers: str) -> list[list[Slot]]:
    """The slots each generator emits: all in one (`shared`) or one generator per layer."""
    if layers == "shared":
        return [list(slots)] if slots else []
    groups: dict[str, list[Slot]] = {}
    for slot in slots:
        groups.setdefault(slot.layer, []).append(slot)
    return list(groups.values())


class QPALoRA(nn.Module):
    """The trainable part of a QPA model: generators whose output *is* the adapter's weights.

    Built from a layout alone (counting builds it on the meta device; `make_generator` lets it
    share one meta generator between layers of one size), then `attach`ed to a peft model.
    With `magnitude` = "trainable", DoRA's magnitude vectors stay peft Parameters.
    """

    def __init__(
        self,
        slots: tuple[Slot, ...],
        config: QPAConfig,
        magnitude: str = "trainable",
        make_generator: Callable[[int, QPAConfig], nn.Module] = QPAGenerator,
    ):
        super().__init__()
        self.config, self.slots = config, slots
        direct = magnitude == "trainable"
        generated = tuple(s for s in slots if s.part != "magnitude" or not direct)
        self.direct = [s for s in slots if s.part == "magnitude" and direct]  # peft trains these
        self.groups = group_slots(generated, config.layers)
        sizes = [sum(s.numel for s in group) for group in self.groups]
        self.generators = nn.ModuleList(make_generator(n, config) for n in sizes)
        self.n_values = sum(sizes)
        zeroed = [s for s in generated if s.starts_at_zero]
        self._scale_of = (
            {s: i for i, s in enumerate(zeroed)} if config.start == "zero-scale" else {}
        )
        self.scales = nn.Parameter(torch.zeros(len(zeroed))) if self._scale_of else None
        for g, (group, size) in enumerate(zip(self.groups, sizes, strict=True)):
            shifted = config.start == "offset" or any(s.part == "magnitude" for s in group)
            self.register_buffer(f"shift{g}", torch.zeros(size) if shifted else None)
        self._owners: list[nn.Module] = []  # filled by `attach`, kept out of the module tree
        self._direct_params: list[nn.Parameter] = []

    @property
    def generator(self) -> QPAGenerator:
        """The one generator of a single-generator layout."""
        if len(self.generators) != 1:
            raise ValueError(f"{len(self.generators)} generators (`layers` = 'per-layer').")
        return self.generators[0]

    def attach(self, peft_model: nn.Module) -> QPALoRA:
        """Take over `peft_model`'s generated tensors; they are regenerated before each forward."""
        self._owners = [s.owner(peft_model) for group in self.groups for s in group]
        self._direct_params = [s.owner(peft_model).weight for s in self.direct]
        self._record_start(peft_model)
        for owner in self._owners:
            del owner._parameters["weight"]  # the generator now owns these weights
        self.materialize()
        peft_model.register_forward_pre_hook(self._before_forward)
        return self

    @torch.no_grad()
    def _record_start(self, peft_model: nn.Module) -> None:
        """Fill the shifts: peft's initial magnitude on generated magnitudes and, for `offset`,
        minus the initial generated values on every slot that starts at zero."""
        for g, (group, gen) in enumerate(zip(self.groups, self.generators, strict=True)):
            shift = getattr(self, f"shift{g}")
            if shift is None:
                continue
            sizes = [s.numel for s in group]
            initial = gen().split(sizes) if self.config.start == "offset" else [None] * len(group)
            for slot, piece, start in zip(group, shift.split(sizes), initial, strict=True):
                if start is not None and slot.starts_at_zero:
                    piece.copy_(-start)
                if slot.part == "magnitude":  # still peft's Parameter: ‖W‖ per output row
                    piece.add_(slot.owner(peft_model).weight.reshape(-1))

    def _before_forward(self, *_) -> None:
        self.materialize()  # a pre-hook's return value would replace the inputs

    def values(self) -> Iterator[tuple[Slot, torch.Tensor]]:
        """Each generated slot's tensor as the model uses it: scale · generated + shift.

        The generator always runs in fp32: under a mixed-precision autocast it is switched off.
        """
        for g, (group, gen) in enumerate(zip(self.groups, self.generators, strict=True)):
            sizes = [s.numel for s in group]
            device = next(gen.parameters()).device.type
            with torch.autocast(device, enabled=False):
                parts = gen().split(sizes)  # one backward node per generator, not one per slot
            shift = getattr(self, f"shift{g}")
            shifts = shift.split(sizes) if shift is not None else [None] * len(group)
            for slot, part, add in zip(group, parts, shifts, strict=True):
                index = self._scale_of.get(slot)
                if index is not None:
                    part = part * self.scales[index]
                if add is not None and self._shifted(slot):
                    part = part + add
                yield slot, part.view(slot.shape)

    def _shifted(self, slot: Slot) -> bool:
        return slot.part == "magnitude" or (self.config.start == "offset" and slot.starts_at_zero)

    def materialize(self) -> None:
        """Generate every tensor and write it into its layer."""
        for owner, (_, value) in zip(self._owners, self.values(), strict=True):
            owner.weight = value

    def written(self) -> list[torch.Tensor]:
        """The tensors the last `materialize` wrote into the layers: what the last forward used."""
        return [owner.weight for owner in self._owners]

    def seed_pairing(self, seed: int) -> None:
        """Draw the random pairing's bit strings from a generator seeded with `seed` (every
        generator alike) instead of torch's global one; a no-op with the matched pairing."""
        if self.config.pairing == "random":
            for gen in self.generators:
                gen.pairing_rng = torch.Generator().manual_seed(seed)

    def named_trainable(self) -> list[tuple[str, nn.Parameter]]:
        """Every trainable tensor under a stable name: the generators' (prefixed with the layer
        when `per-layer`), `scales`, and `LAYER.magnitude` for DoRA magnitudes peft trains."""
        named = [
            (prefix + name, p)
            for prefix, gen in zip(self._prefixes(), self.generators, strict=True)
            for name, p in gen.named_parameters()
        ]
        if self.scales is not None:
            named.append(("scales", self.scales))
        magnitudes = zip(self.direct, self._direct_params, strict=False)  # none before `attach`
        return named + [(f"{s.layer}.magnitude", p) for s, p in magnitudes]

    def named_start(self) -> list[tuple[str, torch.Tensor]]:
        """The frozen shifts recorded at `attach` (the `offset` start, generated magnitudes'
        base), named like `named_trainable`; a resume restores them with the parameters."""
        shifts = [getattr(self, f"shift{g}") for g in range(len(self.groups))]
        named = zip(self._prefixes(), shifts, strict=True)
        return [(prefix + "shift", t) for prefix, t in named if t is not None]

    def _prefixes(self) -> list[str]:
        if self.config.layers == "shared":
            return [""] * len(self.groups)
        return [f"{group[0].layer}." for group in self.groups]

    def param_counts(self) -> dict[str, int]:
        """Trainable parameters by part, summed over generators, plus `scales` and the DoRA
        `magnitude` vectors peft trains; `total` includes everything."""
        counts: Counter[str] = Counter()
        for gen in self.generators:
            counts.update(gen.param_counts())
        counts["scales"] = 0 if self.scales is None else self.scales.numel()
        counts["magnitude"] = sum(s.numel for s in self.direct)
        counts["total"] += counts["scales"] + counts["magnitude"]
        return dict(counts)

    def lora_state(self) -> dict[str, torch.Tensor]:
        """The generated tensors, detached, keyed by peft's parameter names."""
        with torch.no_grad():
            return {slot.key: value.clone() for slot, value in self.values()}


def build_adapter(model: nn.Module, adapter: AdapterConfig, qpa: QPAConfig | None = None):
    """Wrap `model` for `adapter.method`; returns (peft_model, QPALoRA or None)."""
    peft_model = wrap_lora(model, adapter)
    if adapter.method == "lora":
        return peft_model, None
    generators = QPALoRA(lora_slots(peft_model), qpa or QPAConfig(), adapter.dora_magnitude)
    return peft_model, generators.attach(peft_model)
