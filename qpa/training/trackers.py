"""Optional experiment trackers: a training callback that logs the metrics the run folder gets
(every ``step`` and ``eval`` record of ``metrics.jsonl``) to trackio, TensorBoard or Weights &
Biases. None of them is required: each is imported only when asked for, and a missing one is a
clear ValueError before any run folder exists.

>>> check_tracker("none")
'none'
"""

from __future__ import annotations

import importlib.util
from typing import Any

PACKAGES = {"trackio": "trackio", "tensorboard": "tensorboard", "wandb": "wandb"}
PROJECT = "qpa-studio"


def check_tracker(name: str) -> str:
    """`name` when it is `none` or its package is installed; ValueError saying what to install."""
    package = PACKAGES.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ValueError(
            f"`report_to` = {name!r} needs the {package} package: pip install {package}."
        )
    return name


def scalars(event: dict[str, Any]) -> dict[str, float]:
    """A step or eval record's numbers as ``split/name`` (``train/loss``, ``val/perplexity``)."""
    split = event.get("split", "train")
    skip = ("event", "step", "total_steps", "split")
    return {
        f"{split}/{k}": float(v)
        for k, v in event.items()
        if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def trackers_for(config, run) -> list[Tracker]:
    """The callbacks `config.train.report_to` asks for (none: an empty list), for `run`."""
    name = config.train.report_to
    if name == "none":
        return []
    return [Tracker(name, run.id, config.to_dict(), str(run.path / "tracker"))]


class Tracker:
    """A training callback logging to tracker `name`, under the run's id."""

    def __init__(self, name: str, run_id: str, config: dict, log_dir: str) -> None:
        self.name = check_tracker(name)
        if name == "trackio":
            import trackio

            self.client = trackio.init(project=PROJECT, name=run_id, config=config, embed=False)
        elif name == "wandb":
            import wandb

            self.client = wandb.init(project=PROJECT, name=run_id, config=config, dir=log_dir)
        else:
            from torch.utils.tensorboard import SummaryWriter

            self.client = SummaryWriter(log_dir=log_dir)

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("event") in ("step", "eval"):
            values, step = scalars(event), int(event["step"])
            if self.name == "tensorboard":
                for tag, value in values.items():
                    self.client.add_scalar(tag, value, step)
            else:
                self.client.log(values, step=step)
        elif event.get("event") == "done":
            self.close()

    def close(self) -> None:
        if self.name == "tensorboard":
            self.client.close()
        else:
            self.client.finish()
