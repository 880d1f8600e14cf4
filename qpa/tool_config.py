"""Config sections of the tools beside training: chat generation, the barren-plateau explorer
and the fair comparison. Same form as `qpa.config` (defaults, ranges and help in one place, read
by the CLI's flags and the app's controls), kept apart because no run folder stores them.

>>> ChatConfig().max_new_tokens, VarianceConfig().depths, CompareConfig().baseline
(128, (2, 8, 32), 'lora')
"""

from __future__ import annotations

from dataclasses import dataclass

from qpa.config import Config, option


@dataclass(frozen=True)
class ChatConfig(Config):
    """How replies are generated, in the CLI's ``chat`` and the app's Chat tab."""

    max_new_tokens: int = option(128, "Longest reply, in tokens.", min=1, max=2048)
    temperature: float = option(
        0.7,
        "How random the reply is: 0 always takes the likeliest next token (greedy); higher "
        "values sample more freely.",
        min=0,
        max=2,
    )
    top_p: float = option(
        0.9,
        "Nucleus sampling: draw only among the likeliest tokens whose probabilities add up to "
        "this share.",
        above=0,
        max=1,
    )


@dataclass(frozen=True)
class VarianceConfig(Config):
    """The barren-plateau explorer's grid: ``python -m qpa variance`` and the Results tab."""

    qubits: tuple[int, ...] = option((2, 4, 6, 8, 10), "Qubit counts N.", min=1, max=16)
    depths: tuple[int, ...] = option((2, 8, 32), "Circuit depths L.", min=1, max=512)
    samples: int = option(
        200, "Random circuits per (N, L), angles θ ~ U(−π, π).", min=2, max=1_000_000
    )
    cost: str = option(
        "local",
        "What is differentiated: `local` (⟨Z₀⟩), `global` (P(|0…0⟩)) or `generator` (the whole "
        "QPA generator and a quadratic loss on its output, at most 12 qubits).",
        ("local", "global", "generator"),
    )
    seed: int = option(0, "Seed of the random angles and of the generator.", min=0)


@dataclass(frozen=True)
class CompareConfig(Config):
    """The fair comparison protocol's own settings (`python -m qpa compare`)."""

    variants: tuple[str, ...] = option(
        ("lora-r1", "lora-r2", "lora", "lora-r8", "qpa-c256-h32", "qpa-c512-h32",
         "qpa-c1024-h48", "qpa-shallow-gelu", "qpa-c2048-h96"),
        "Variants to compare (`python -m qpa sweep --list`); the default is the parameter "
        "frontier: LoRA at ranks 1, 2, 4, 8 and QPA from about 5% to 100% of LoRA r = 4.",
    )  # fmt: skip
    lr_grid: tuple[float, ...] = option(
        (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
        "Learning rates every variant is tried at (seed: the first of `seeds`), on validation.",
        above=0,
        max=10,
    )
    seeds: tuple[int, ...] = option(
        (0, 1, 2), "Seeds trained at each variant's chosen rate; test perplexity over them.", min=0
    )
    baseline: str = option("lora", "The variant every other one is compared with.")

    def validate(self) -> None:
        if not self.variants:
            raise ValueError("`variants` must name at least one variant.")
        if len(set(self.lr_grid)) < 2:
            raise ValueError(
                f"`lr_grid` = {','.join(f'{x:g}' for x in self.lr_grid) or '(empty)'} needs at "
                "least two learning rates, e.g. 3e-3,1e-2,3e-2: one point cannot be tuned."
            )
        if not self.seeds:
            raise ValueError("`seeds` must list at least one seed, e.g. 0,1,2.")
        if self.baseline not in self.variants:
            raise ValueError(
                f"`baseline` = {self.baseline!r} is not among `variants` = {','.join(self.variants)}."
            )
