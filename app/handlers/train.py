"""Train tab: turn the form into run configs, launch them as background jobs, watch them.

A launch is checked completely before anything touches the disk (config values, demo caps,
the model, the corpus, the qubit count); then each run is queued as a run folder and `app.jobs`
starts ``python -m qpa train --resume <id>`` when a slot is free. Watching reads only run
directories, so any page, after any restart, sees the same progress and queue positions.
"""

from __future__ import annotations

import re
import secrets
import shlex
import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from app import plots
from app.handlers.common import as_float, as_int, as_run_ids, check_model, guarded
from app.handlers.data import DATA_FIELDS, data_config
from app.handlers.progress import latest_launch, run_card, series, signature
from app.handlers.shape import FIELDS as DESIGN_FIELDS
from app.handlers.shape import configs
from app.jobs import LIVE
from app.state import Studio
from qpa import (
    SHAPE_PRESETS,
    RunConfig,
    TrainConfig,
    config_to_argv,
    count_params,
    describe_estimate,
    describe_gpu_launch,
    estimate_launch,
    list_runs,
    new_run_id,
    open_run,
    plan_training,
    validate_config,
)

PLANS = {
    "QPA + matched LoRA baseline": ("qpa-lora", "lora"),
    "QPA only": ("qpa-lora",),
    "LoRA only": ("lora",),
}
TRAIN_FIELDS = (
    "plan",
    "steps",
    "batch_size",
    "lr",
    "eval_every",
    "patience",
    "max_length",
    "max_examples",
    "seed",
    "loss_on",
    "perplexity",
    "source",
    "topics",
    "upload",
)
FORM_FIELDS = DESIGN_FIELDS + TRAIN_FIELDS


def _check_caps(studio: Studio, config: RunConfig) -> None:
    caps, t, d = studio.caps, config.train, config.data
    limits = [
        ("steps", t.steps, caps.steps),
        ("batch_size", t.batch_size, caps.batch_size),
        ("max_length", d.max_length, caps.max_length),
    ]
    if caps.max_examples:
        limits.append(("max_examples", d.max_examples or 10**9, caps.max_examples))
    for name, value, cap in limits:
        if value > cap:
            shown = "0 (all)" if value == 10**9 else f"{value:,}"
            raise ValueError(
                f"`{name}` = {shown} is above this demo's cap of {cap:,}; "
                "run the studio locally (python app.py) for bigger runs."
            )


def build_configs(studio: Studio, form: dict[str, Any]) -> list[RunConfig]:
    """The validated run configs of one launch (QPA first), or ValueError saying what is wrong."""
    model, adapter, qpa = configs({k: form[k] for k in DESIGN_FIELDS})
    if model in SHAPE_PRESETS:
        raise ValueError(
            f"`model` = {model!r} is a shape-only preset (no weights) for counting; to train "
            "pick smollm2, tiny-llama, tiny-gpt2 or a Hub id."
        )
    check_model(studio.caps.any_model, model)
    if form["plan"] not in PLANS:
        raise ValueError(f"`plan` = {form['plan']!r} is not one of: {', '.join(PLANS)}.")
    count_params(model, adapter, qpa)  # raises when the qubits are too few for the weights
    base = RunConfig(model={"model": model}, adapter=adapter, qpa=qpa, data=data_config(form),
                     train=train_config(form))  # fmt: skip
    _check_caps(studio, base)
    out = []
    for method in PLANS[form["plan"]]:
        config = base.replace(adapter=adapter.replace(method=method))
        out.append(validate_config(config))
    return out


def train_config(form: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of the form; ValueError naming a bad field."""
    return TrainConfig(
        steps=as_int("steps", form["steps"]),
        batch_size=as_int("batch_size", form["batch_size"]),
        lr=as_float("lr", form["lr"]),
        eval_every=as_int("eval_every", form["eval_every"]),
        patience=as_int("patience", form["patience"]),
        seed=as_int("seed", form["seed"]),
        loss_on=form["loss_on"] or TrainConfig().loss_on,
        perplexity=form["perplexity"] or TrainConfig().perplexity,
    )


# What the plan reads: the training settings and the data (its examples, epochs, warnings).
PLAN_FIELDS = ("steps", "batch_size", "eval_every", "patience", "lr", "seed", "loss_on",
               "perplexity", *DATA_FIELDS)  # fmt: skip


def plan_text(form: dict[str, Any]) -> str:
    """The launch's plan as Markdown: examples, epochs, evaluations, and its warnings."""
    try:
        plan = plan_training(RunConfig(data=data_config(form), train=train_config(form)))
    except (ValueError, OSError) as e:
        return f"⚠️ {e}"
    epochs = f" = **{plan.epochs:.2f} epochs**" if plan.epochs is not None else ""
    t = plan.train
    data = (f"**{plan.n_train:,}** train / {plan.n_val:,} validation examples"
            if plan.n_train is not None else "examples counted when tokenized")  # fmt: skip
    lines = [f"{data} · {t.steps:,} steps × batch {t.batch_size}{epochs} · validate every "
             f"{t.eval_every} steps, export the best"]  # fmt: skip
    return "\n\n".join(lines + [f"⚠️ {w}" for w in plan.warnings()])


def keep_upload(studio: Studio, config: RunConfig) -> RunConfig:
    """Copy an accepted upload into the studio's private uploads folder (0700, files 0600):
    gradio's temp copy may vanish, and no other user or visitor may read it."""
    corpus = config.data.corpus
    if corpus == "chatterbot" or corpus.startswith("hf:"):
        return config
    folder = studio.uploads_dir
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(corpus).name)[-80:]
    target = folder / f"{secrets.token_hex(4)}-{name}"
    shutil.copyfile(corpus, target)
    target.chmod(0o600)
    return config.replace(data=config.data.replace(corpus=str(target.resolve())))


def _submit(studio: Studio, run_configs: list[RunConfig]) -> list[str]:
    """Queue one launch: its runs share a fresh launch group (recorded in their status)."""
    group = new_run_id("launch")
    return [studio.jobs.submit(config, group) for config in run_configs]


def launch(studio: Studio, form: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Check and queue one launch, then start what may start; returns (run ids, commands)."""
    run_configs = build_configs(studio, form)
    live = studio.jobs.live()
    if len(live) + len(run_configs) > studio.caps.live_runs:
        raise ValueError(
            f"{len(live)} run(s) are queued or training; at most {studio.caps.live_runs} may "
            "wait at once here. Wait, or cancel one first."
        )
    ids = _submit(studio, [keep_upload(studio, c) for c in run_configs])
    studio.jobs.schedule()
    return ids, [studio.jobs.shell_command(i) for i in ids]


def watch_choices(studio: Studio) -> list[str]:
    """Run ids to pick from: every run (queued ones included), newest first."""
    return [r.id for r in list_runs(studio.root)]


def default_watch(studio: Studio) -> list[str]:
    """What a fresh page watches: the live runs, else the newest launch not all cancelled."""
    return studio.jobs.live() or latest_launch(studio)


def estimate_text(studio: Studio, form: dict[str, Any]) -> str:
    """The launch's time on this machine, from what earlier runs measured here (its runs train
    one after the other); or why there is no estimate."""
    try:
        configs = build_configs(studio, form)
    except ValueError as e:
        return f"Estimate: none until the form is valid ({e})"
    if studio.settings.zerogpu:  # trained in GPU calls inside the Start request
        return describe_gpu_launch(configs)
    return f"Estimate: {describe_estimate(estimate_launch(configs))}."


# -- event handlers ---------------------------------------------------------------------------------


@guarded
def on_estimate(studio: Studio, form: dict[str, Any]) -> str:
    """Form change (`FORM_FIELDS`): the launch's estimated time."""
    return estimate_text(studio, form)


@guarded
def on_launch(studio: Studio, form: dict[str, Any]) -> dict[str, Any]:
    """Launch button (`FORM_FIELDS`): start the runs and watch them; show the equivalent CLI
    commands (``watch``, ``cli``; ``last`` cleared so the cards redraw)."""
    ids = launch_warned(studio, form)
    queued = [i for i in ids if studio.jobs.state(i).get("state") == "queued"]
    waiting = f"; {len(queued)} wait in the queue" if queued else ""
    gr.Info(f"Launched {', '.join(ids)} in the background{waiting}.")
    return launched_view(studio, ids)


def launch_warned(studio: Studio, form: dict[str, Any]) -> list[str]:
    """`launch` the form's runs, with a warning for each weakness of their training plan."""
    ids, _ = launch(studio, form)
    for warning in plan_training(open_run(ids[0], studio.root).config).warnings():
        gr.Warning(warning)
    return ids


def launched_view(studio: Studio, ids: list[str]) -> dict[str, Any]:
    """What the Train tab shows after a launch: its runs watched, their CLI commands, and the
    cards' signature cleared so that they redraw."""
    watch = gr.update(choices=watch_choices(studio), value=ids)
    return {"watch": watch, "cli": cli_text(studio, ids), "last": ""}


def cli_text(studio: Studio, ids: list[str]) -> str:
    """The commands the studio runs for `ids`, and the same training without the studio."""
    started = [studio.jobs.shell_command(i) for i in ids]
    fresh = [f"python -m qpa train --config {studio.root / i / 'config.json'}" for i in ids]
    flags = [
        shlex.join(["python", "-m", "qpa", "train", *config_to_argv(open_run(i, studio.root).config)])
        for i in ids
    ]
    return "\n".join(
        ["# the studio starts each queued run with", *started,
         "# the same training from a terminal, as a new run", *fresh,
         "# or with flags (every other setting at its default)", *flags]
    )  # fmt: skip


@guarded
def on_refresh(studio: Studio, ids: list[str] | None, last: str):
    """Timer tick: redraw progress and curves only when a watched run changed."""
    ids = as_run_ids("watch", ids)
    now = signature(studio, ids)
    if now == last:
        return gr.skip(), gr.skip(), last
    if not ids:
        note = (
            '<div class="qpa-empty">No run selected. Launch one above, or pick runs to watch.</div>'
        )
        return note, plots.curves_figure([]), now
    cards = "".join(run_card(studio, i) for i in ids)
    return cards, plots.curves_figure(series(studio, ids)), now


@guarded
def on_cancel(studio: Studio, ids: list[str] | None):
    """Cancel button: ask every watched run that is still live to stop (a run card's Stop
    sends its one id)."""
    live = [i for i in as_run_ids("watch", ids) if studio.jobs.state(i).get("state") in LIVE]
    if not live:
        raise ValueError("None of the watched runs is queued or training; nothing to cancel.")
    for run_id in live:
        gr.Info(studio.jobs.stop(run_id))
    return ""


def on_plan(form: dict[str, Any]) -> str:
    """A plan field changed (`PLAN_FIELDS`): recount the examples and epochs, and say what to
    watch for."""
    return plan_text(form)


def on_load(studio: Studio):
    """Page load: offer every run, reattach to the live ones (or the newest launch) and show
    the commands that run them."""
    ids = default_watch(studio)
    cli = cli_text(studio, ids) if ids else gr.skip()
    return gr.update(choices=watch_choices(studio), value=ids), cli
