"""Named QPA variants and LoRA trained over several seeds, one run folder each, then tabulated.

A variant is a set of config overrides on top of a base config (the defaults, or the CLI's
flags); `apply_variant` applies one, which is also how ``train --variant`` and the app's Design
presets get a named shape. Runs are named ``<prefix>-<variant>-s<seed>``, so an interrupted sweep
started again reuses every finished run, resumes stopped ones from their checkpoint and trains
the rest.

>>> sorted(VARIANTS)[:3]
['lora', 'lora-r1', 'lora-r2']
>>> apply_variant(RunConfig(), "qpa").qpa.hidden_sizes  # the defaults are qpa-shallow-gelu
(32, 64, 128, 128, 64, 32, 32)
>>> variant_config(RunConfig(), "qpa-gelu", seed=2).qpa.activation
'gelu'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qpa.config import PAPER_MAPPING, RunConfig
from qpa.runs.run import Run
from qpa.runs.store import create_run, open_run, runs_root
from qpa.studies.results import run_record, summarize


@dataclass(frozen=True)
class Variant:
    help: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def _qpa(**changes: Any) -> dict[str, dict[str, Any]]:
    """QPA overrides naming every mapping field (`PAPER_MAPPING`'s), so the config's defaults
    (the best measured shape) never leak into a named variant."""
    return {"qpa": {**PAPER_MAPPING, **changes}}


VARIANTS = {
    "lora": Variant("plain LoRA, the baseline", {"adapter": {"method": "lora"}}),
    "qpa": Variant("the paper's QPA: affine mapping MLP, chunk 2048, random start", _qpa()),
    "qpa-gelu": Variant(
        "GELU between the mapping layers: rank ceiling 33 instead of 9", _qpa(activation="gelu")
    ),
    "qpa-fourier": Variant(
        "16 Fourier frequencies of the chunk index as extra inputs: affine, the width-32 layers "
        "cap the rank at 33",
        _qpa(fourier_features=16),
    ),
    "qpa-shallow": Variant(
        "one hidden layer of 48 instead of seven: the same rank ceiling 9, less depth",
        _qpa(hidden_sizes=(48,)),
    ),
    "qpa-shallow-fourier": Variant(
        "one hidden layer of 48 and 16 Fourier frequencies: affine, rank ceiling 41",
        _qpa(hidden_sizes=(48,), fourier_features=16),
    ),
    "qpa-shallow-gelu": Variant(
        "two GELU layers (64, 48) and 16 Fourier frequencies: rank ceiling 49 (the default)",
        _qpa(hidden_sizes=(64, 48), activation="gelu", fourier_features=16),
    ),
    "qpa-wide-gelu": Variant(
        "chunk 1024 (N = 8), one GELU layer of 96, 16 Fourier frequencies: rank ceiling 97",
        _qpa(chunk_size=1024, hidden_sizes=(96,), activation="gelu", fourier_features=16),
    ),
    # The parameter frontier (issue #15): LoRA at ranks 1-8 and QPA shapes from about 5% to 100%
    # of LoRA r = 4's parameters; shares are of smollm2's lm_head (`python -m qpa count`).
    "lora-r1": Variant("LoRA rank 1: 25% of rank 4's parameters",
                       {"adapter": {"method": "lora", "rank": 1}}),
    "lora-r2": Variant("LoRA rank 2: 50% of rank 4's parameters",
                       {"adapter": {"method": "lora", "rank": 2}}),
    "lora-r8": Variant("LoRA rank 8: 200% of rank 4's parameters",
                       {"adapter": {"method": "lora", "rank": 8}}),
    **{
        f"qpa-c{chunk}-h{width}": Variant(
            f"chunk {chunk}, one GELU layer of {width}, 16 Fourier frequencies: {share} of "
            "LoRA r = 4's parameters on smollm2",
            {"qpa": {"chunk_size": chunk, "hidden_sizes": (width,), "activation": "gelu",
                     "fourier_features": 16}},
        )
        for chunk, width, share in ((256, 32, "5%"), (512, 32, "9%"), (1024, 48, "26%"),
                                    (2048, 96, "102%"))
    },
}  # fmt: skip
FRONTIER = ("lora-r1", "lora-r2", "lora", "lora-r8", "qpa-c256-h32", "qpa-c512-h32",
            "qpa-c1024-h48", "qpa-shallow-gelu", "qpa-c2048-h96")  # fmt: skip


BEST_MEASURED = "qpa-shallow-gelu"  # the lowest test perplexity of QPA's shapes in `qpa compare`


def apply_variant(config: RunConfig, name: str) -> RunConfig:
    """`config` with variant `name`'s overrides applied (every other field kept), validated."""
    if name not in VARIANTS:
        raise ValueError(f"`variant` = {name!r} is not one of: {', '.join(VARIANTS)}.")
    data = config.to_dict()
    for section, changes in VARIANTS[name].overrides.items():
        data[section].update(changes)
    return RunConfig.from_dict(data)


def variant_config(base: RunConfig, name: str, seed: int) -> RunConfig:
    """`base` with variant `name`'s overrides and the seed applied, resolved."""
    config = apply_variant(base, name)
    return config.replace(train=config.train.replace(seed=seed)).resolved()


def plan(base: RunConfig, names: Sequence[str], seeds: Sequence[int], prefix: str):
    """(run id, config) for every variant and seed, checked before anything is trained."""
    from qpa.runs.store import check_run_id
    from qpa.training.loop import validate_config

    if not names or not seeds:
        raise ValueError("`variants` and `seeds` must each name at least one.")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"`variants` entry {unknown[0]!r} is not one of: {', '.join(VARIANTS)}.")
    out = []
    for name in dict.fromkeys(names):
        for seed in dict.fromkeys(seeds):
            config = validate_config(variant_config(base, name, seed))
            out.append((check_run_id(f"{prefix}-{name}-s{seed}", "prefix"), config))
    return out


def _comparable(config: RunConfig) -> dict[str, Any]:
    """The config without its device and process count: a run started on one device may be
    finished on another."""
    data = config.to_dict()
    for name in ("device", "processes"):  # where a run trains, not what
        data["train"].pop(name)
    return data


def _existing(run_id: str, config: RunConfig, root) -> Run | None:
    """The run already named `run_id`, if its config is `config`; ValueError if it differs."""
    if not (runs_root(root) / run_id).exists():
        return None
    run = open_run(run_id, root)
    if _comparable(run.config) != _comparable(config):
        raise ValueError(
            f"`prefix`: run {run_id!r} exists with another config; pick another prefix."
        )
    return run


def run_one(run_id: str, config: RunConfig, root=None, callbacks=()) -> Run:
    """Train (or reuse, or resume) the run `run_id` of `config`; returns it when finished.

    Under ``accelerate launch`` rank 0 decides (and writes); the other processes train beside it.
    """
    from qpa.training.distributed import world_for
    from qpa.training.loop import train
    from qpa.training.session import pick_device

    world = world_for(pick_device(config.train.device))
    taken = world.lead(lambda: _take(run_id, config, root), public=lambda t: t[1])
    run, state = taken if world.is_main else (open_run(run_id, root), taken)
    if state == "done":
        return run
    try:
        train(config, run, callbacks=callbacks, resume=state != "queued")
    finally:
        if world.is_main:
            run.unlock()
    return run


def _take(run_id: str, config: RunConfig, root) -> tuple[Run, str]:
    """The run `run_id` and its state: reused when done, else created or reopened, locked and
    cleared of an old stop request (ValueError when it cannot be resumed)."""
    run = _existing(run_id, config, root)
    if run is not None and run.status().get("state") == "done":
        return run, "done"
    if run is None:
        run = create_run(config, root, run_id)
        run.claim(token="sweep")
    run.lock()  # ValueError while another process trains it
    try:
        state = run.status().get("state")
        if state != "queued" and not run.has_state():
            raise ValueError(
                f"`prefix`: run {run_id!r} ended {state} before its first checkpoint; delete "
                "its folder or pick another prefix."
            )
        run.clear_stop()
    except BaseException:
        run.unlock()
        raise
    return run, state


def sweep(
    base: RunConfig,
    names: Sequence[str],
    seeds: Sequence[int],
    prefix: str = "sweep",
    root: str | Path | None = None,
    on_run: Callable[[str, int, int], None] | None = None,
    callbacks=(),
) -> list[dict[str, Any]]:
    """Train every variant × seed (reusing finished runs) and return the summary rows."""
    jobs = plan(base, names, seeds, prefix)
    runs = []
    for i, (run_id, config) in enumerate(jobs):
        if on_run is not None:
            on_run(run_id, i, len(jobs))
        runs.append(run_one(run_id, config, root, callbacks))
    return summarize([r for r in map(run_record, runs) if r is not None])
