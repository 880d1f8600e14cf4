"""The subcommands that load models or train: ``train``, ``eval``, ``export``, ``push``, ``chat``.

Split from `qpa.cli.main` (which parses flags and dispatches here lazily) so that ``--help``,
``count`` and ``runs`` never import this module. Each ``cmd_*`` takes the parsed arguments and
returns an exit status; user errors are raised as ValueError and printed by `qpa.cli.main.main`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from qpa.cli.run_config import load_config
from qpa.cli.run_text import outcome, state_text
from qpa.config import RunConfig
from qpa.constants import CLAIM_ENV, DEFAULT_MODEL
from qpa.flags import set_flags
from qpa.formatting import format_number
from qpa.hub.folder import run_adapter
from qpa.runs.run import FINISHED, Run
from qpa.runs.store import check_run_id, open_run, runs_root
from qpa.safe_io import dumps
from qpa.training.launch import launched_processes, launched_rank

# -- train --------------------------------------------------------------------------------------


class ProgressBar:
    """A training callback drawing a tqdm bar (off when stderr is not a terminal); the phases
    before and beside the steps (converting the model, caching rows n of N) as lines on stderr."""

    def __init__(self) -> None:
        self.bar = None
        self.quiet = launched_rank() > 0  # under `accelerate launch`, rank 0 alone draws

    def __call__(self, event: dict[str, Any]) -> None:
        from tqdm import tqdm

        if self.quiet:
            return
        kind, step, total = event.get("event"), event.get("step") or 0, event.get("total_steps")
        if kind == "prepare":
            tqdm.write(event["message"], file=sys.stderr)
            return
        if self.bar is None and kind != "done":
            self.bar = tqdm(
                total=total, initial=step, unit="step", disable=None, dynamic_ncols=True
            )
        if kind == "step" and self.bar is not None:
            self.bar.n = step
            shown = {"loss": "{:.4f}", "lr": "{:.2e}", "tokens_per_s": "{:,.0f}"}
            self.bar.set_postfix(
                {k: f.format(event[k]) for k, f in shown.items() if event.get(k) is not None}
            )
        elif kind == "eval":
            loss, ppl = (
                format_number(event.get("loss"), ".4f"),
                format_number(event.get("perplexity")),
            )
            tqdm.write(f"step {step}: val loss {loss}, perplexity {ppl}")
        elif kind == "done":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run_for_training(args: argparse.Namespace) -> tuple[Run, RunConfig, bool]:
    """The run to train, locked to this process: a new one for a fully validated config, a
    queued one (started from step 0) or a stopped one (resumed from its last checkpoint)."""
    from qpa.runs.store import create_run
    from qpa.training.loop import validate_config

    if not args.resume:
        if args.name is not None:
            check_run_id(args.name, "name")
            if (runs_root(args.runs_dir) / args.name).exists():
                raise ValueError(f"`name` = {args.name!r} is taken; pick another name.")
        config = validate_config(load_config(args))  # nothing is written for a bad config
        run = create_run(config, args.runs_dir, args.name)
        run.claim(token="cli")  # at once: a studio sharing this folder must not start it too
        run.lock()
        return run, config, False
    given = [f"--{k.split('.')[1].replace('_', '-')}" for k in set_flags(args)]
    named = {"--config": args.config, "--variant": args.variant, "--name": args.name}
    given += [flag for flag, value in named.items() if value]
    if given:
        raise ValueError(f"`resume` continues a run with its own config; drop {', '.join(given)}.")
    run = open_run(args.resume, args.runs_dir)
    _check_resumable(run)  # before the lock, so a refusal leaves the folder untouched
    run.lock()  # ValueError while another process trains it
    try:
        _check_resumable(run)  # again: it may have changed while we took the lock
        if run.status()["state"] == "queued":
            _take_claim(run)
            return run, run.config, False
        run.clear_stop()
        run.remove_temps()
        return run, run.config, True
    except BaseException:
        run.unlock()
        raise


def _check_resumable(run: Run) -> None:
    """ValueError unless `run` is queued, or stopped with a checkpoint to resume from."""
    state = run.status()["state"]
    if state == "queued":
        return
    if state in ("running", "done"):
        raise ValueError(
            f"`resume` = {run.id!r} is {state}; only a queued or stopped run can be resumed."
        )
    if not run.has_state():
        raise ValueError(
            f"`resume` = {run.id!r} ({state}) has no saved state to resume from; it ended "
            "before its first checkpoint, so train it afresh with `--config` on its config.json."
        )
    run.load_state()  # a damaged checkpoint is refused before anything is written


def _take_claim(run: Run) -> None:
    """Claim a queued run, or accept the claim the studio took for this process ($QPA_CLAIM)."""
    if run.claim(token="cli"):
        return
    token, info = os.environ.get(CLAIM_ENV, ""), run.claim_info() or {}
    if not token or info.get("token") != token:
        raise ValueError(
            f"`resume` = {run.id!r} is queued and already being started by process "
            f"{info.get('pid')} ({info.get('token') or 'unknown'}); nothing to do."
        )
    run.set_claim_pid(os.getpid())


def _lower_priority() -> None:
    """Honour $QPA_NICE (the studio sets it) so the app answers requests while runs train."""
    value = os.environ.get("QPA_NICE", "")
    if value.strip().lstrip("-").isdigit() and hasattr(os, "nice"):
        try:
            os.nice(int(value))
        except OSError:  # not allowed here: training at normal priority is still correct
            pass


def settle_run(run: Run, state: str, error: str | None) -> None:
    """Leave a consistent status if training ended without recording how."""
    if run.status().get("state") not in FINISHED:
        run.set_status(state, error=error, pid=None, message=error or "")
        run.log(f"{state}: {error}")


def print_plan(config: RunConfig, out=None) -> None:
    """The plan line (examples, epochs, evaluations) and its warnings (to stderr by default)."""
    from qpa.training.plan import plan_training

    out, plan = out or sys.stderr, plan_training(config)
    print(f"plan: {plan.line()}", file=out)
    for warning in plan.warnings():
        print(f"warning: {warning}", file=out)


def _dry_run(args: argparse.Namespace) -> int:
    """``train --dry-run``: the checked config's plan and warnings; nothing is written."""
    from qpa.studies.results import label
    from qpa.training.loop import validate_config

    if args.resume:
        raise ValueError("`dry_run` plans a new run; drop --resume.")
    config = validate_config(load_config(args))
    data = ",".join(config.data.topics) or "all topics" if config.data.corpus == "chatterbot" else ""
    print(f"{label(config)} on {config.model.model}, {config.data.corpus} {data}".rstrip())
    print_plan(config, sys.stdout)
    print(dry_run_estimate(config)[1])
    print("dry run: nothing trained, nothing written")
    return 0


def dry_run_estimate(config: RunConfig) -> tuple[dict[str, Any], str]:
    """A dry run's estimate of wall time and peak memory here, from a short measured warm-up,
    and its text; or why there is none (a model not downloaded yet, data out of reach)."""
    from qpa.training.estimate import describe_warmup, warmup_blocker, warmup_estimate

    reason = warmup_blocker(config)
    if reason is None:
        try:
            estimate = warmup_estimate(config)
            return estimate, describe_warmup(estimate)
        except (ValueError, OSError) as e:  # e.g. Hub data out of reach
            reason = str(e)
    return {"none": reason}, f"estimate: none before a run ({reason})"


def cmd_train(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    if launched_processes() > 1:
        return _train_launched(args)
    run, config, resume = _run_for_training(args)  # user errors surface before heavy imports
    try:
        return _train(run, config, resume)
    finally:
        run.unlock()


def _train_launched(args: argparse.Namespace) -> int:
    """``train`` in one of the processes of ``accelerate launch``: rank 0 creates (or opens) and
    locks the run and trains into it; the others learn its id and train beside it, writing
    nothing (`qpa.training.distributed`). A refusal on rank 0 is every rank's error."""
    from qpa.training import loop as engine
    from qpa.training.distributed import world_for
    from qpa.training.session import pick_device

    planned = open_run(args.resume, args.runs_dir).config if args.resume else load_config(args)
    world = world_for(pick_device(planned.train.device))

    def public(started: tuple[Run, RunConfig, bool]) -> tuple[str, bool, bool]:
        run, _, resume = started
        return run.id, resume, run.stop_requested() and not resume

    started = world.lead(lambda: _run_for_training(args), public)
    if world.is_main:
        run, config, resume = started
        try:
            return _train(run, config, resume)
        finally:
            run.unlock()
    run_id, resume, cancelled = started
    if not cancelled:  # else rank 0 ends it at once (`_train`)
        run = open_run(run_id, args.runs_dir)  # read only: to resume from its checkpoint
        engine.train(run.config, run, resume=resume)
    return 0  # rank 0's exit status tells how the run ended; a non-zero one here would make
    # the launcher stop rank 0 before it has written the end of the run


def _train(run: Run, config: RunConfig, resume: bool) -> int:
    """Train the locked `run`, report on stderr/stdout, return the exit status."""
    if run.stop_requested() and not resume:  # cancelled while it was being started
        run.set_status("cancelled", pid=None, message="cancelled before it started")
        print(f"run {run.id} was cancelled before it started", file=sys.stderr)
        return 130
    _lower_priority()
    from qpa.training import loop as engine
    from qpa.training.estimate import StartRecorder
    from qpa.training.trackers import trackers_for
    run.set_status(pid=os.getpid())  # a crash before the first step then reads as interrupted
    print(f"run {run.id} in {run.path}", file=sys.stderr)
    print_plan(config)

    def on_sigint(signum, frame) -> None:  # first Ctrl-C: stop cleanly after this step
        run.request_stop()
        print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    bar, previous = ProgressBar(), signal.signal(signal.SIGINT, on_sigint)
    try:
        started = [StartRecorder(config)] if launched_processes() == 1 else []
        callbacks = [*started, bar, *trackers_for(config, run)]
        engine.train(config, run, callbacks=callbacks, resume=resume)
    except KeyboardInterrupt:
        settle_run(run, "cancelled", "interrupted (Ctrl-C)")
        raise
    except Exception as e:
        settle_run(run, "failed", f"{type(e).__name__}: {e}")
        raise
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    row, result = run.summary(), run.status().get("result") or {}
    print(f"run {run.id}: {state_text(row)}, step {row['step']}/{row['total_steps']}"
          f"{' (stopped early)' if result.get('stopped_early') else ''}")  # fmt: skip
    print(outcome(result))
    if run.has_adapter():
        print(f"adapter: {run.adapter_dir}")
    return {"done": 0, "cancelled": 130}.get(row["state"], 1)


# -- eval, export, chat ---------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from qpa.training import loop as engine
    run = open_run(args.run, args.runs_dir) if args.run else None
    adapter_dir = run_adapter(run) if run else None
    config = load_config(args, run.config if run else None).resolved()
    result = engine.evaluate(config, adapter_dir=adapter_dir)
    if args.json:
        print(dumps(result, indent=2, default=str))
        return 0
    what = f"run {run.id}" if run else f"base model {config.model.model}"
    loss, ppl = format_number(result.get("loss"), ".4f"), format_number(result.get("perplexity"))
    print(f"{what} on {config.data.corpus}: loss {loss}, perplexity {ppl}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from qpa.hub.folder import write_export  # loads torch

    run = open_run(args.run, args.runs_dir)
    out = Path(args.out).expanduser()
    if out.resolve().is_relative_to(run.path.resolve()):
        raise ValueError(f"`out` = {str(out)!r} is inside run {run.id}; choose a folder outside it.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"`out` = {str(out)!r} already exists; choose a new folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        write_export(run, tmp, args.merged)  # the card and the Hub id, for old runs too
        tmp.chmod(0o755)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"exported {'merged model' if args.merged else 'adapter'} of run {run.id} to {out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from qpa.hub.push import push_run

    run = open_run(args.run, args.runs_dir)
    url = push_run(run, args.repo, private=args.private, merged=args.merged)
    print(f"pushed the {'merged model' if args.merged else 'adapter'} of run {run.id} to {url}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from qpa.inference.chat import ChatModel, check_generation

    gen = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "seed": args.seed,
    }
    check_generation(**gen)
    run = open_run(args.run, args.runs_dir) if args.run else None
    adapter_dir = run_adapter(run) if run else None
    model = run.config.model.model if run else args.model or DEFAULT_MODEL
    chat = ChatModel.load(model, adapter_dir, merge=args.merge)
    system = [{"role": "system", "content": args.system}] if args.system else []
    if args.prompt is not None:
        _print_stream(chat.stream([*system, {"role": "user", "content": args.prompt}], **gen))
        return 0
    return _chat_loop(chat, system, gen)


def _print_stream(pieces) -> str:
    text = ""
    for piece in pieces:
        text += piece
        print(piece, end="", flush=True)
    print()
    return text


def _chat_loop(chat, system: list[dict], gen: dict) -> int:
    """Read user lines from stdin until EOF or /exit; /reset forgets the conversation."""
    tty = sys.stdin.isatty()
    what = f"{chat.name} + adapter" if chat.adapter_dir else chat.name
    print(f"chatting with {what}; /reset, /exit or Ctrl-D", file=sys.stderr)
    history = list(system)
    while True:
        try:
            line = input("you> " if tty else "").strip()
        except EOFError:
            return 0
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            history = list(system)
        elif line:
            try:
                pieces = chat.stream([*history, {"role": "user", "content": line}], **gen)
                reply = _print_stream(pieces)
            except ValueError as e:  # e.g. the conversation outgrew the context
                print(f"error: {e} (/reset starts over)", file=sys.stderr)
                continue
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": reply}]
