"""The Design form as configs: its fields and defaults, the checked (model, AdapterConfig,
QPAConfig) they give, the link between chunk size and qubits, and the named QPA variants.

A form is a dict of values by field name (`FIELDS`: the basic shape first, `BASIC`, then the
"Advanced QPA" options, `ADVANCED`); a field left out takes its config's default, so a caller
that knows only part of the shape still works. A variant is one of qpa's variants that changes
only the QPA section (`python -m qpa train --variant NAME`); the page's Preset dropdown
offers them.

>>> model, adapter, qpa = configs({"model": "gpt2-config", "hidden_sizes": "32,64",
...                                "entangler": "ring"})
>>> adapter.rank, qpa.entangler, qpa.activation, qpa.shots  # the fields left out: defaults
(4, 'ring', 'gelu', 0)
>>> linked({"model": "gpt2-config", "chunk_size": 1024, "n_qubits": 7}, "chunk")  # 200 chunks
(1024, 8)
>>> matching_variant({"model": "gpt2-config", "hidden_sizes": "48", "activation": "none"})
'qpa-shallow-fourier'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.handlers.common import as_float, as_int, as_ints, as_names, check_model
from qpa import (
    BEST_MEASURED,
    VARIANTS,
    AdapterConfig,
    ModelConfig,
    QPAConfig,
    RunConfig,
    apply_variant,
    chunk_for_qubits,
    field_help,
    largest_generator,
    qubits_needed,
)

BASIC = (
    "model",
    "target_modules",
    "rank",
    "chunk_size",
    "n_qubits",
    "depth",
    "hidden_sizes",
    "entangler",
)
ADVANCED = (
    "activation",
    "fourier_features",
    "start",
    "layers",
    "use_dora",
    "dora_magnitude",
    "dora_norm",
    "shots",
    "noise",
)
FIELDS = BASIC + ADVANCED
HELP = {**field_help(ModelConfig), **field_help(AdapterConfig), **field_help(QPAConfig)}
DEFAULTS = {name: HELP[name]["default"] for name in FIELDS}
MAX_QUBITS = HELP["n_qubits"]["max"]
MAX_CHUNK = HELP["chunk_size"]["max"]

QPA_VARIANTS = tuple(name for name, v in VARIANTS.items() if set(v.overrides) <= {"qpa"})
_VARIANT_QPA = {name: apply_variant(RunConfig(), name).qpa for name in QPA_VARIANTS}
CUSTOM = "custom"
# What a variant sets: the form's QPA fields, but the qubits, which follow the chunk size.
VARIANT_FIELDS = tuple(k for k in FIELDS if k in field_help(QPAConfig) and k != "n_qubits")


def _variant_label(name: str) -> str:
    best = " (best measured)" if name == BEST_MEASURED else ""
    return f"{name}{best}: {VARIANTS[name].help.split(':')[0]}"


VARIANT_CHOICES = [(_variant_label(n), n) for n in QPA_VARIANTS] + [
    (f"{CUSTOM}: the values below, as edited", CUSTOM)
]


def form(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of the form by name, in `FIELDS` order: `values`, the rest at their defaults;
    TypeError for a name that is no field."""
    unknown = [name for name in values if name not in DEFAULTS]
    if unknown:
        raise TypeError(f"The Design form has no field {', '.join(unknown)}; fields: {FIELDS}.")
    return {**DEFAULTS, **values}


def key(values: Mapping[str, Any]) -> tuple:
    """The form as a hashable tuple in `FIELDS` order (lists joined), for caching."""
    f = form(values)
    f["target_modules"] = ",".join(as_names(f["target_modules"], "target_modules"))
    f["hidden_sizes"] = ",".join(as_names(f["hidden_sizes"], "hidden_sizes"))
    return tuple(f.values())


def _choice(f: dict[str, Any], name: str) -> str:
    """A radio or dropdown value; an empty one (gradio's None) is the field's default."""
    return f[name] or DEFAULTS[name]


def configs(values: Mapping[str, Any]) -> tuple[str, AdapterConfig, QPAConfig]:
    """Validated (model name, AdapterConfig, QPAConfig) from the form's raw values."""
    f = form(values)
    model = check_model(True, f["model"])  # text, not empty; the caps are the caller's
    adapter = AdapterConfig(
        target_modules=as_names(f["target_modules"], "target_modules"),
        rank=as_int("rank", f["rank"]),
        use_dora=bool(f["use_dora"]),
        dora_magnitude=_choice(f, "dora_magnitude"),
        dora_norm=_choice(f, "dora_norm"),
    )
    qpa = _qpa_config(f)
    if not adapter.target_modules:
        raise ValueError("`target_modules` is empty; choose at least one layer (e.g. lm_head).")
    return model, adapter, qpa


def _qpa_config(f: dict[str, Any]) -> QPAConfig:
    """The QPAConfig of the form's values by name; ValueError naming a bad field."""
    return QPAConfig(
        chunk_size=as_int("chunk_size", f["chunk_size"]),
        n_qubits=as_int("n_qubits", f["n_qubits"]),
        depth=as_int("depth", f["depth"]),
        hidden_sizes=as_ints("hidden_sizes", f["hidden_sizes"]),
        **{name: _choice(f, name) for name in ("entangler", "activation", "start", "layers")},
        fourier_features=as_int("fourier_features", f["fourier_features"]),
        shots=as_int("shots", f["shots"]),
        noise=as_float("noise", f["noise"]),
    )


def variant_values(name: str) -> dict[str, Any]:
    """The form values variant `name` sets (`VARIANT_FIELDS`): its overrides, the other QPA
    fields at their defaults."""
    if name not in _VARIANT_QPA:
        raise ValueError(f"`preset` = {name!r} is not one of: {', '.join(QPA_VARIANTS)}.")
    qpa = _VARIANT_QPA[name]
    values = {k: getattr(qpa, k) for k in VARIANT_FIELDS}
    values["hidden_sizes"] = ",".join(map(str, qpa.hidden_sizes))
    return values


def matching_variant(values: Mapping[str, Any]) -> str:
    """The variant whose QPA shape the form has (the qubits aside), else `CUSTOM`."""
    try:
        qpa = _qpa_config({**form(values), "n_qubits": 0})
    except ValueError:  # a half-typed field matches no variant
        return CUSTOM
    return next((name for name, shape in _VARIANT_QPA.items() if shape == qpa), CUSTOM)


def linked(values: Mapping[str, Any], lead: str) -> tuple[int, int]:
    """(chunk_size, n_qubits) after a change: `lead` is the control the user moved.

    ``chunk``: qubits become the fewest that fit; ``qubits``: the chunk size becomes the smallest
    power of two that fits; anything else: qubits rise to the minimum if they no longer fit.
    """
    f = form(values)
    model, adapter, qpa = configs({**f, "n_qubits": 0})
    n_values = largest_generator(model, adapter, qpa)
    n = as_int("n_qubits", f["n_qubits"])
    if lead == "qubits":
        if not 1 <= n <= MAX_QUBITS:
            raise ValueError(f"`n_qubits` = {n} must be between 1 and {MAX_QUBITS}.")
        return chunk_for_qubits(n_values, n), n
    need = qubits_needed(n_values, qpa.chunk_size)
    if need > MAX_QUBITS:
        raise ValueError(
            f"`chunk_size` = {qpa.chunk_size:,} would need {need} qubits for {n_values:,} "
            f"generated weights; the simulator allows {MAX_QUBITS}: use a chunk size ≥ "
            f"{chunk_for_qubits(n_values, MAX_QUBITS):,}."
        )
    return qpa.chunk_size, need if lead == "chunk" else max(n, need)
