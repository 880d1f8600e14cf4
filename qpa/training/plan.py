"""A training plan before any run exists, and the warnings that go with it.

`plan_training` counts a config's training and validation examples (without tokenizing) and
turns steps × batch size into passes over the data (epochs); `TrainingPlan.warnings` says, with
the numbers and the fix, when the plan is likely to overfit or to measure a noisy perplexity.
`rising_warning` is the same advice during training, from the validation curve. The CLI's
``train`` (its plan line and ``--dry-run``) and the app's Train tab show the same plan.

>>> plan = TrainingPlan(n_train=129, n_val=14, train=TrainConfig(steps=300, batch_size=8))
>>> round(plan.epochs, 1), len(plan.warnings())
(18.6, 2)
>>> rising_warning([40.1, 37.5, 39.0, 41.2, 45.3], [0, 25, 50, 75, 100]).split(":")[0]
'validation perplexity rose 3 evaluations in a row (37.500 → 45.300)'
"""

from __future__ import annotations

from dataclasses import dataclass

from qpa.config import RunConfig, TrainConfig

OVERFIT_EPOCHS = 5  # more passes than this over ...
SMALL_TRAIN = 500  # ... fewer training examples than this is likely to overfit
SMALL_VAL = 50  # fewer validation examples than this give a noisy perplexity
RISING_EVALS = 3  # evaluations in a row with a rising validation perplexity


@dataclass(frozen=True)
class TrainingPlan:
    n_train: int | None  # training examples; None when only tokenizing can count them
    n_val: int | None  # validation examples
    train: TrainConfig

    @property
    def epochs(self) -> float | None:
        """Passes over the training examples: steps × batch size / examples."""
        t = self.train
        return t.steps * t.batch_size / self.n_train if self.n_train else None

    def line(self) -> str:
        """The plan in one line, e.g. for the CLI before training starts."""
        data = (
            f"{self.n_train:,} train / {self.n_val:,} validation examples"
            if self.n_train is not None
            else "examples counted when tokenized"
        )
        t = self.train
        epochs = f" = {self.epochs:.2f} epochs" if self.epochs is not None else ""
        stop = f", stop after {t.patience} without a new best" if t.patience else ""
        return (
            f"{data}; {t.steps:,} steps × batch {t.batch_size}{epochs}; validate every "
            f"{t.eval_every} steps ({t.evaluations} times after the start{stop})"
        )

    def warnings(self) -> list[str]:
        """Why this plan may mislead, with the numbers and the fix (empty when it looks fine)."""
        out = []
        epochs, batch = self.epochs, self.train.batch_size
        if epochs is not None and epochs > OVERFIT_EPOCHS and self.n_train < SMALL_TRAIN:
            fit = max(1, OVERFIT_EPOCHS * self.n_train // batch)
            out.append(
                f"{epochs:.1f} passes over only {self.n_train:,} training examples: likely to "
                f"overfit (the validation perplexity climbs after the first passes). Use more "
                f"data (more topics; all of them: leave `topics` empty) or at most {fit:,} "
                f"`steps` (≤ {OVERFIT_EPOCHS} passes at batch {batch})."
            )
        if self.n_val is not None and self.n_val < SMALL_VAL:
            out.append(
                f"Only {self.n_val} validation examples: the validation perplexity will be "
                f"noisy. Use more data or a larger `val_fraction` (≥ {SMALL_VAL} examples)."
            )
        return out


def plan_training(config: RunConfig) -> TrainingPlan:
    """The plan of `config`; ValueError naming the field when the data leave a split empty."""
    from qpa.data.splits import split_sizes

    sizes = split_sizes(config.data)
    n_train, n_val = sizes[:2] if sizes is not None else (None, None)
    return TrainingPlan(n_train, n_val, config.train)


def rising_streak(values: list[float]) -> int:
    """How many evaluations in a row, at the end of `values`, rose above the one before.

    >>> rising_streak([5, 4, 6, 7]), rising_streak([5, 4]), rising_streak([])
    (2, 0, 0)
    """
    n = 0
    for before, after in zip(values[-2::-1], values[::-1], strict=False):
        if after <= before:
            break
        n += 1
    return n


def rising_warning(values: list[float], steps: list[int]) -> str | None:
    """A warning when the validation perplexity rose `RISING_EVALS` evaluations in a row."""
    n = rising_streak(values)
    if n < RISING_EVALS:
        return None
    best = min(range(len(values)), key=values.__getitem__)
    return (
        f"validation perplexity rose {n} evaluations in a row ({values[-n - 1]:.3f} → "
        f"{values[-1]:.3f}): the run is overfitting; its best step so far is {steps[best]} "
        f"({values[best]:.3f}). Fewer steps or more data would help."
    )
