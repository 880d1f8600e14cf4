"""Typed, validated configuration for QPA Studio.

One dataclass per concern (model, adapter, QPA generator, data, training), composed into
`RunConfig`. Each field's ``metadata["help"]`` is the single source of the CLI's ``--help``
and the app's tooltips; ``metadata["choices"]`` lists the allowed strings where there are few.
Every check raises ``ValueError`` naming the field in backticks and echoing the value.

>>> QPAConfig(chunk_size=1024).depth
8
>>> AdapterConfig(rank=0)
Traceback (most recent call last):
...
ValueError: `rank` = 0 must be ≥ 1.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from qpa.constants import DEFAULT_MODEL

METHODS = ("qpa-lora", "lora")
# Each method's rate as chosen by the fair protocol on the default corpus (README: "The fair
# protocol"; `python -m qpa compare --steps 150 --lr-grid 3e-3,1e-2,3e-2 --prefix cpu-chat`).
DEFAULT_LR = {"qpa-lora": 1e-2, "lora": 1e-2}
COMPARE_TEST_FRACTION = 0.1  # the test split `compare` holds out when none is set
MAX_NOISY_QUBITS = 10  # the noisy simulation holds a 4**N density matrix (qpa.noise)
MAX_SEED = 2**32 - 1  # torch seeds are 64-bit, and the batch order multiplies the seed by ~10^6
# The official code's mapping MLP (the paper's shape, `--variant qpa`); the defaults below are
# the best measured shape instead (`qpa-shallow-gelu`).
PAPER_MAPPING = {"hidden_sizes": (32, 64, 128, 128, 64, 32, 32), "activation": "none",
                 "fourier_features": 0}  # fmt: skip


def option(default: Any, help: str, choices: tuple[str, ...] = (), **range_: float) -> Any:
    """A dataclass field carrying its help text, allowed choices and numeric range."""
    meta = {"help": help, "choices": choices, **range_}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


class Config:
    """Base for config dataclasses: type coercion, range/choice checks, JSON round trip."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            _check_range(f, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} expects a mapping, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown {cls.__name__} field(s) {', '.join(f'`{k}`' for k in unknown)}; "
                f"known: {', '.join(sorted(known))}."
            )
        return cls(**data)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    return list(value) if isinstance(value, tuple) else value


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check `value` against the annotation `hint`, converting lossless cases (list→tuple, 3→3.0)."""
    if isinstance(hint, type) and issubclass(hint, Config):
        return value if isinstance(value, hint) else hint.from_dict(value)
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"`{name}` = {value!r} must be a list of {item.__name__}.")
        return tuple(_coerce(name, v, item) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"`{name}` = {value!r} must be true or false.")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"`{name}` = {value!r} must be a whole number.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"`{name}` = {value!r} must be a number.")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"`{name}` = {value!r} must be a finite number.")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise ValueError(f"`{name}` = {value!r} must be text.")
    return value


def _check_range(f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if meta.get("choices") and v not in meta["choices"]:
            raise ValueError(f"`{f.name}` = {v!r} is not one of: {', '.join(meta['choices'])}.")
        if "min" in meta and v < meta["min"]:
            raise ValueError(f"`{f.name}` = {v!r} must be ≥ {_bound(meta['min'])}.")
        if "max" in meta and v > meta["max"]:
            raise ValueError(f"`{f.name}` = {v!r} must be ≤ {_bound(meta['max'])}.")
        if "above" in meta and v <= meta["above"]:
            raise ValueError(f"`{f.name}` = {v!r} must be > {_bound(meta['above'])}.")


def _bound(value: float) -> str:
    """A range bound as written: whole numbers in full (4,294,967,295), others short."""
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class ModelConfig(Config):
    model: str = option(
        DEFAULT_MODEL,
        "Base causal LM: `smollm2` (embedded SmolLM2-135M-Instruct), a tiny test model (`tiny-llama`, "
        "`tiny-gpt2`), a Hub id or a local folder; for counting only, the shape presets "
        "`gpt2-config`, `gemma-config`, `smollm2-config`.",
    )

    def validate(self) -> None:
        if not self.model.strip():
            raise ValueError("`model` is empty; name a preset, a Hub id or a local folder.")


@dataclass(frozen=True)
class AdapterConfig(Config):
    method: str = option(
        "qpa-lora",
        "`qpa-lora`: LoRA weights generated by QPA; `lora`: plain LoRA baseline.",
        METHODS,
    )
    target_modules: tuple[str, ...] = option(
        ("lm_head",), "Layers to adapt: exact module names, name suffixes or regular expressions."
    )
    rank: int = option(4, "LoRA rank r: A is r×d_in, B is d_out×r.", min=1, max=1024)
    lora_alpha: float = option(
        8.0, "LoRA alpha; the update is scaled by lora_alpha / rank.", above=0
    )
    lora_dropout: float = option(0.0, "Dropout on the LoRA input during training.", min=0, max=0.9)
    use_dora: bool = option(
        False,
        "DoRA (peft `use_dora`): each adapted weight becomes a magnitude per output row times a "
        "direction that LoRA updates; with `lora` the DoRA baseline, with `qpa-lora` QPA-DoRA.",
    )
    dora_magnitude: str = option(
        "trainable",
        "QPA-DoRA's magnitude vector (one value per output row, starting at the row norms ‖W‖): "
        "`trainable` keeps peft's vector as ordinary trainable parameters next to the generator; "
        "`generated` has the generator emit it too, as a delta added to the starting ‖W‖.",
        ("trainable", "generated"),
    )
    dora_norm: str = option(
        "constant",
        "DoRA's row norm ‖W + s·B·A‖ in training: `constant` (peft and the DoRA paper: no "
        "gradient through it) or `differentiated` (its gradient reaches A and B; measured to "
        "make QPA-DoRA train). `differentiated` needs the cached lm_head path: lm_head the only "
        "target, `cache_backbone` on, no LoRA dropout. Without DoRA it does nothing.",
        ("constant", "differentiated"),
    )


@dataclass(frozen=True)
class QPAConfig(Config):
    chunk_size: int = option(
        2048,
        "Values the mapping MLP emits per basis state (n_mlp); fewer means more qubits.",
        min=1,
        max=1 << 20,
    )
    n_qubits: int = option(
        0,
        "Qubits N; 0 uses the fewest that give enough chunks, ⌈log₂⌈M / chunk_size⌉⌉.",
        min=0,
        max=24,
    )
    depth: int = option(
        8, "Circuit blocks L, each R_Y on every qubit then a CNOT ladder.", min=1, max=512
    )
    entangler: str = option(
        "ladder",
        "CNOTs per block: `ladder` (0→1…N−2→N−1, QPA) or `ring` (Quantum-Train).",
        ("ladder", "ring"),
    )
    hidden_sizes: tuple[int, ...] = option(
        (64, 48),
        "Hidden widths of the mapping MLP; the official code's are 32,64,128,128,64,32,32 "
        "(`--variant qpa`).",
        min=1,
        max=4096,
    )
    activation: str = option(
        "gelu",
        "Activation between MLP layers; `none` (affine) in the official code.",
        ("none", "relu", "gelu", "tanh", "silu"),
    )
    pairing: str = option(
        "matched",
        "`matched`: row i gets basis state i's bits (paper); `random`: re-sampled each call (official code).",
        ("matched", "random"),
    )
    gamma: float = option(0.1, "Post-processing γ in (β·tanh(γ·2^(N−1)·p))^α.", above=0)
    beta: float = option(0.6, "Post-processing β.", above=0)
    alpha: float = option(0.15, "Post-processing exponent α.", above=0, max=4)
    shots: int = option(
        0,
        "Measurement shots per circuit run; 0: exact probabilities. Otherwise each run (every "
        "training step, evaluation batch and the export) uses counts/shots from a fresh "
        "multinomial sample, as a device would; gradients are straight-through (exact ∂p/∂θ).",
        min=0,
        max=1_000_000_000,
    )
    noise: float = option(
        0.0,
        "Depolarising probability on every qubit after each block, simulated exactly with a "
        f"density matrix (at most {MAX_NOISY_QUBITS} qubits); 0: noiseless.",
        min=0,
        max=1,
    )
    start: str = option(
        "random",
        "How the generated adapter starts: `random` (as generated: non-zero, away from the base "
        "model); `zero-scale` (a trainable scalar per adapted layer, starting at 0, multiplies "
        "its generated B: starts at the base model); `offset` (B minus the B generated at "
        "initialisation: starts at the base model, with full gradients to the generator).",
        ("random", "zero-scale", "offset"),
    )
    layers: str = option(
        "shared",
        "`shared`: one generator emits every adapted layer's LoRA matrices; `per-layer`: one "
        "generator per adapted layer, sized to that layer (same chunk size, its own qubits).",
        ("shared", "per-layer"),
    )
    fourier_features: int = option(
        16,
        "Extra row context: sin/cos of the chunk index at this many frequencies (2 inputs each); "
        "lifts the rank ceiling of an activation-free mapping by 2 per frequency.",
        min=0,
        max=256,
    )

    def validate(self) -> None:
        if not self.hidden_sizes:
            raise ValueError("`hidden_sizes` must list at least one width.")
        if self.noise > 0 and self.n_qubits > MAX_NOISY_QUBITS:
            raise ValueError(
                f"`noise` = {self.noise:g} is simulated with a density matrix, at most "
                f"{MAX_NOISY_QUBITS} qubits; `n_qubits` = {self.n_qubits}: set one of them lower."
            )


@dataclass(frozen=True)
class DataConfig(Config):
    corpus: str = option(
        "chatterbot",
        "`chatterbot` (embedded chat corpus), `gradio-changelog` (plain English text: the "
        "entries of the installed gradio's release notes), a .txt/.md/.jsonl/.csv/.yml file, or "
        "`hf:NAME[:CONFIG][@SPLIT]` (a Hub dataset's `text` column; split `train` by default).",
    )
    topics: tuple[str, ...] = option(
        (), "chatterbot topics to use (empty: all), e.g. `ai,science`."
    )
    max_length: int = option(128, "Tokens per training example or block.", min=8, max=8192)
    packing: str = option(
        "example",
        "`example`: one padded example per text; `block`: concatenate and cut into blocks.",
        ("example", "block"),
    )
    text_unit: str = option(
        "paragraph",
        "How plain text becomes examples: `paragraph` (text files split at blank lines, empty "
        "texts dropped) or `line` (each line of a .txt/.md file or row of an `hf:` dataset, "
        "verbatim, empty ones kept as all-padding examples: the paper's WikiText-2 protocol).",
        ("paragraph", "line"),
    )
    pad_with: str = option(
        "pad",
        "Token filling padded positions: the tokenizer's `pad` token (its eos when it has none) "
        "or `eos` (the official QPA code).",
        ("pad", "eos"),
    )
    val_fraction: float = option(
        0.1,
        "Share of examples held out for validation (unless `eval_corpus` is given).",
        above=0,
        max=0.5,
    )
    test_fraction: float = option(
        0.0,
        "Share of examples held out as a test split, after validation: evaluated once at the end "
        "of training, never used to pick anything. 0: none (`python -m qpa compare` holds out "
        f"{COMPARE_TEST_FRACTION:g} unless set).",
        min=0,
        max=0.5,
    )
    eval_corpus: str = option(
        "",
        "Validate on this corpus instead, whole and in order (same forms as `corpus`, e.g. "
        "`hf:NAME:CONFIG@test`), and train on all of `corpus`; empty: hold out `val_fraction`.",
    )
    split_seed: int = option(0, "Seed of the train/validation/test shuffle.", min=0, max=MAX_SEED)
    max_examples: int = option(0, "Use at most this many examples (0: all).", min=0)

    def validate(self) -> None:
        held = self.test_fraction + (0 if self.eval_corpus else self.val_fraction)
        if held >= 1:
            raise ValueError(
                f"`test_fraction` = {self.test_fraction:g} with `val_fraction` = "
                f"{self.val_fraction:g} leaves no training data; hold out less than 1 in all."
            )


@dataclass(frozen=True)
class TrainConfig(Config):
    steps: int = option(300, "Optimizer steps.", min=1, max=1_000_000)
    batch_size: int = option(8, "Examples per step.", min=1, max=4096)
    lr: float = option(
        0.0,
        "Peak learning rate; 0 picks the method's default (1e-2 for QPA and LoRA, as tuned by `qpa compare`).",
        min=0,
        max=10,
    )
    weight_decay: float = option(0.0, "AdamW weight decay.", min=0, max=1)
    warmup_fraction: float = option(0.05, "Share of steps with linear warm-up.", min=0, max=1)
    schedule: str = option(
        "cosine", "Learning-rate schedule after warm-up.", ("cosine", "linear", "constant")
    )
    grad_clip: float = option(1.0, "Gradient-norm clip (0: off).", min=0)
    eval_every: int = option(
        25,
        "Validate every this many steps (and at the start and end); the adapter of the step with "
        "the best validation loss is kept and exported.",
        min=1,
    )
    keep: str = option(
        "best",
        "Which adapter a run exports: `best` (the step with the lowest validation loss, replies "
        "only on chat data) or `last` (the final step, as the paper reports).",
        ("best", "last"),
    )
    patience: int = option(
        0,
        "Early stopping: end the run after this many evaluations in a row without a new best "
        "validation loss (0: off, train every step).",
        min=0,
    )
    seed: int = option(
        0, "Seed of initialisation, batch order and dropout.", min=0, max=MAX_SEED
    )
    loss_on: str = option(
        "assistant",
        "Tokens the training loss counts: `assistant` (the replies of chat data, the default: "
        "measured better on replies for both methods; every token of plain text) or `all` (the "
        "system and user turns too).",
        ("all", "assistant"),
    )
    perplexity: str = option(
        "masked",
        "`masked`: padding excluded (standard); `paper`: padding counted as in the official code.",
        ("masked", "paper"),
    )
    cache_backbone: bool = option(
        True, "When only lm_head is adapted, compute hidden states once and train the head alone."
    )
    device: str = option(
        "auto",
        "`auto` (the QPA_DEVICE environment variable when set, else cuda when available, else "
        "cpu), `cpu`, `cuda` or `mps`.",
        ("auto", "cpu", "cuda", "mps"),
    )
    report_to: str = option(
        "none",
        "Also log the run's metrics to an experiment tracker: `trackio` (local-first, made for "
        "Spaces), `tensorboard` or `wandb`, where installed (none is required); the run folder "
        "keeps them either way.",
        ("none", "trackio", "tensorboard", "wandb"),
    )

    @property
    def evaluations(self) -> int:
        """Validations after the start: every `eval_every` steps and at the last step.

        >>> TrainConfig(steps=300, eval_every=25).evaluations, TrainConfig(steps=10, eval_every=4).evaluations
        (12, 3)
        """
        return -(-self.steps // self.eval_every)

    def validate(self) -> None:
        if self.patience and self.patience >= self.evaluations:
            fix = f"use at most {self.evaluations - 1}, " if self.evaluations > 1 else "use "
            raise ValueError(
                f"`patience` = {self.patience} evaluations can never stop this run: it validates "
                f"{self.evaluations} time(s) after the start (`steps` = {self.steps}, `eval_every` "
                f"= {self.eval_every}); {fix}more steps, a smaller `eval_every`, or 0 (off)."
            )


@dataclass(frozen=True)
class RunConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    qpa: QPAConfig = field(default_factory=QPAConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def resolved(self) -> RunConfig:
        """The config with defaults that depend on other fields filled in (the method's lr)."""
        if self.train.lr > 0:
            return self
        return self.replace(train=self.train.replace(lr=DEFAULT_LR[self.adapter.method]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"Config is not valid JSON: {e}") from None
        except RecursionError:
            raise ValueError("Config is nested too deeply to be read.") from None
        return cls.from_dict(data)


SECTIONS = {
    "model": ModelConfig,
    "adapter": AdapterConfig,
    "qpa": QPAConfig,
    "data": DataConfig,
    "train": TrainConfig,
}


def field_help(section: type[Config]) -> dict[str, dict[str, Any]]:
    """Name → {default, help, choices, min, max} for every field of a config section."""
    out = {}
    for f in dataclasses.fields(section):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = {"default": default, **f.metadata}
    return out
