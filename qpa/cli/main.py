"""``python -m qpa``: count, train, list runs, evaluate, export, push, chat, sweep, reproduce,
variance.

Config flags are generated from the config dataclasses (`qpa.flags`), so ``--help`` shows the
same text as the app. Every user error ends as ``error: <message>`` on stderr with exit status 2
and nothing written; heavy modules (torch, transformers) are imported inside the subcommands, so
``--help`` stays instant. Training runs write everything to their run folder (`qpa.runs.run`).
Set ``QPA_DEBUG=1`` to see the traceback behind an ``error:`` line.

    python -m qpa count --model gpt2-config --rank 4 --chunk-size 2048 --depth 8
    python -m qpa train --model tiny-llama --steps 3 --name demo
    python -m qpa train --variant qpa-shallow-gelu --depth 4  # a named shape, then flags
    python -m qpa runs; python -m qpa chat --run demo --prompt "Hi"
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from qpa.cli.run_config import load_config
from qpa.cli.run_text import outcome, state_text
from qpa.config import SECTIONS, QPAConfig
from qpa.constants import DEFAULT_MODEL
from qpa.flags import add_config_flags, add_section_flags
from qpa.formatting import format_duration, format_number, format_table
from qpa.runs.files import redact
from qpa.runs.run import Run
from qpa.runs.store import list_runs, open_run
from qpa.safe_io import dumps
from qpa.studies.sweep import BEST_MEASURED, VARIANTS
from qpa.tool_config import ChatConfig, CompareConfig, VarianceConfig
from qpa.training.estimate import WARMUP_STEPS
from qpa.training.launch import launched_rank

# -- count --------------------------------------------------------------------------------------


def cmd_count(args: argparse.Namespace) -> int:
    config = load_config(args)  # bad flags fail before torch is imported
    from qpa.adapters.counts import count_params, qubit_choices

    counts = count_params(config.model.model, config.adapter, config.qpa)
    choices = qubit_choices(counts.max_values, counts.n_qubits)
    if args.json:
        print(dumps({**counts.to_dict(), "qubit_choices": choices}, indent=2))
    else:
        print(
            f"{config.model.model}: rank {config.adapter.rank}, chunk_size {config.qpa.chunk_size:,}"
        )
        print(format_table(counts.table(), ("", "parameters", "note"), right=(1,)))
        print(f"\nqubits → chunk size: the smallest power of two whose 2^N chunks hold the "
              f"{counts.max_values:,} generated values")
        rows = [(n, f"{chunk:,}", "← this shape" if n == counts.n_qubits else "")
                for n, chunk in choices]
        print(format_table(rows, ("N", "chunk_size", ""), right=(0, 1)))
    return 0


# -- runs ---------------------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show_run(open_run(args.run_id, args.runs_dir), args.json)
    if args.action == "cancel":
        print(open_run(args.run_id, args.runs_dir).cancel())
        return 0
    rows = [run.summary() for run in list_runs(args.runs_dir)]
    if args.json:
        print(dumps(rows, indent=2))
    elif not rows:
        print(f"no runs under {args.runs_dir or os.environ.get('QPA_RUNS') or 'runs'}")
    else:
        header = ("id", "method", "model", "state", "step", "val ppl", "best", "base", "params",
                  "time")  # fmt: skip
        table = [
            (r["id"], r["method"], r["model"], state_text(r), f"{r['step']}/{r['total_steps']}",
             format_number(r["val_perplexity"]), format_number(r["best_step"], "d"),
             format_number(r["base_perplexity"]), format_number(r["trainable_params"], ","),
             format_duration(r["wall_time_s"]))
            for r in rows
        ]  # fmt: skip
        print(format_table(table, header, right=(4, 5, 6, 7, 8, 9)))
    return 0


def _show_run(run: Run, as_json: bool) -> int:
    status, metrics = run.status(), run.metrics()
    last = {
        split: [m for m in metrics if m.get("split") == split][-1:] for split in ("train", "val")
    }
    info = {"id": run.id, "path": str(run.path), "config": run.config.to_dict(), "status": status,
            "last_metrics": [m for ms in last.values() for m in ms],
            "adapter": str(run.adapter_dir) if run.has_adapter() else None}  # fmt: skip
    if as_json:
        print(dumps(info, indent=2))
        return 0
    for key in ("config", "status", "last_metrics"):
        print(f"{key}:\n{dumps(info[key], indent=2)}")
    print(f"adapter: {info['adapter'] or '(none yet)'}")
    print(outcome(status.get("result") or {}) or "result: (not finished)")
    return 0


# -- parser and entry point -----------------------------------------------------------------------


def _lazy(module: str, function: str):
    """A handler that imports `module` (heavy: torch, transformers) only when its command runs."""

    def handler(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), function)(args)

    return handler


def _flag(parser, name: str, help: str, **kw) -> None:
    parser.add_argument(name, help=help, **kw)


def _common(parser, json_help: str = "", inner: bool = False) -> None:
    """--runs-dir (and --json); `inner` parsers keep what the outer `runs` parser already set."""
    keep = {"default": argparse.SUPPRESS} if inner else {}
    _flag(
        parser, "--runs-dir", "Runs folder (default: $QPA_RUNS or ./runs).", metavar="DIR", **keep
    )
    if json_help:
        _flag(parser, "--json", json_help, action="store_true", **keep)


def _variant_flag(p) -> None:
    _flag(p, "--variant", f"Start from a named variant: {', '.join(VARIANTS)} ({BEST_MEASURED} "
          "measured best; `python -m qpa sweep --list` says what each changes). Applied over "
          "--config; the config flags given override it.", metavar="NAME")  # fmt: skip


def _count_flags(p) -> None:
    _variant_flag(p)
    _flag(p, "--json", "Print JSON.", action="store_true")


def _train_flags(p) -> None:
    _variant_flag(p)
    _flag(p, "--name", "Run id instead of a generated one (letters, digits, '.', '_', '-').")
    _flag(p, "--dry-run", "Check the config, print the plan (examples, epochs, evaluations), "
          "its warnings and an estimate of wall time and peak memory on this device from a "
          f"{WARMUP_STEPS}-step measured warm-up; train nothing, write nothing.",
          action="store_true")  # fmt: skip
    _flag(
        p,
        "--resume",
        "Start this queued run, or continue this stopped or interrupted one from its last "
        "checkpoint.",
        metavar="RUN_ID",
    )
    _common(p)


def _runs_flags(p) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    for name, text in (
        ("show", "Print a run's config, status and last metrics."),
        ("cancel", "Cancel a queued run, or ask a running one to stop after its current step."),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("run_id", metavar="RUN_ID")
        _common(action, "Print JSON.", inner=True)
    _common(p, "Print the runs as JSON.")


def _eval_flags(p) -> None:
    _flag(p, "--run", "Evaluate this run's adapter (its config; flags override).", metavar="RUN_ID")
    _common(p, "Print the result as JSON.")


def _export_flags(p) -> None:
    _flag(p, "--run", "The run to export.", metavar="RUN_ID", required=True)
    _flag(
        p,
        "--out",
        "New folder to write (must not exist, or be empty).",
        metavar="DIR",
        required=True,
    )
    _flag(
        p,
        "--merged",
        "Save a full transformers model with the adapter merged in.",
        action="store_true",
    )
    _common(p)


def _push_flags(p) -> None:
    _flag(p, "--run", "The run to push.", metavar="RUN_ID", required=True)
    _flag(p, "--repo", "Hub model repo to push to (created when missing).", metavar="USER/NAME",
          required=True)  # fmt: skip
    _flag(p, "--private", "Create the repo private.", action="store_true")
    _flag(p, "--merged", "Push the base model with the adapter merged in.", action="store_true")
    _common(p)
    p.epilog = "The token comes from $HF_TOKEN (a token with write access)."


def _chat_flags(p) -> None:
    which = p.add_mutually_exclusive_group()
    _flag(which, "--model", f"Base model to chat with (default: {DEFAULT_MODEL}).")
    _flag(which, "--run", "Chat with this run's model and exported adapter.", metavar="RUN_ID")
    _flag(p, "--prompt", "Answer this one message and exit (else: read lines from stdin).")
    _flag(p, "--system", "A system message put before the conversation.")
    add_section_flags(p, "generation", ChatConfig)
    _flag(p, "--seed", "Seed for reproducible sampling.", type=int, metavar="N")
    _flag(
        p,
        "--merge",
        "Merge the adapter into the base weights (default: on).",
        action=argparse.BooleanOptionalAction,
        default=True,
    )
    _common(p)


def _sweep_flags(p) -> None:
    _flag(p, "--variants", "Comma-separated variant names (see --list).", default="lora,qpa")
    _flag(p, "--seeds", "Comma-separated seeds, e.g. 0,1,2.", default="0")
    _flag(p, "--prefix", "Run ids are PREFIX-VARIANT-sSEED; finished ones are reused.",
          default="sweep")  # fmt: skip
    _flag(p, "--list", "List the variants and exit.", action="store_true")
    _flag(p, "--report", "Train nothing: tabulate the finished runs whose id starts with "
          "PREFIX- (every finished run with --prefix '').", action="store_true")  # fmt: skip
    _flag(p, "--markdown", "Also write the table to this Markdown file.", metavar="FILE")
    _common(p, "Print the summary rows as JSON.")


def _compare_flags(p) -> None:
    _flag(p, "--prefix", "Run ids are PREFIX-VARIANT-lrLR-sSEED; finished ones are reused, and "
          "the result is saved as PREFIX.compare.json in the runs folder.", default="compare")  # fmt: skip
    _flag(p, "--dry-run", "Print the plan (variants, grid, seeds, number of runs); train nothing.",
          action="store_true")  # fmt: skip
    _flag(p, "--report", "Train nothing: print the saved result of PREFIX.", action="store_true")
    _flag(p, "--markdown", "Also write the table to this Markdown file.", metavar="FILE")
    _flag(p, "--svg", "Also draw test perplexity against parameters into this SVG file.",
          metavar="FILE")  # fmt: skip
    _common(p, "Print the result as JSON.")
    add_section_flags(p, "compare", CompareConfig)
    p.epilog = (
        "Tunes every variant on one learning-rate grid (validation, first seed), trains the "
        "other seeds at each one's best rate and reports the test split, which nothing is "
        "chosen on. Config flags set the shared setup, e.g. --corpus gradio-changelog "
        "--packing block, --steps 100, --device cuda."
    )


def _reproduce_flags(p) -> None:
    p.add_argument("recipe", nargs="?", help="The recipe to run; none lists them.")
    _flag(p, "--list", "List the recipes and exit.", action="store_true")
    _flag(p, "--dry-run", "Print the resolved config, the paper's figures, the parameter "
          "counts and an estimate of wall time and peak memory on this device from a "
          f"{WARMUP_STEPS}-step measured warm-up (when the model is downloaded); train nothing.",
          action="store_true")  # fmt: skip
    _flag(p, "--epochs", "Passes over the training lines; sets the steps unless --steps is given "
          "(default: 3, the paper's).", type=int, default=3, metavar="N")  # fmt: skip
    _flag(p, "--name", "Run id instead of a generated one (letters, digits, '.', '_', '-').")
    _common(p, "Print JSON: the recipes, the dry-run plan or the result.")
    add_config_flags(p)
    p.epilog = (
        "--method lora runs the recipe's LoRA baseline. Config flags override the recipe's "
        "settings (the defaults they list are the general ones; --dry-run shows the recipe's), "
        "e.g. --model tiny-gpt2 --corpus train.txt --eval-corpus test.txt --steps 4."
    )


def _variance_flags(p) -> None:
    add_section_flags(p, "variance", VarianceConfig)
    add_section_flags(p, "circuit", QPAConfig, fields=("entangler", "noise"))
    _flag(p, "--json", "Print the rows and the fitted decay rates as JSON.", action="store_true")


COMMANDS = {  # name: (help, handler, config sections given as flags, extra flags)
    "count": ("Count trainable parameters of LoRA and QPA for a model.", cmd_count,
              ("model", "adapter", "qpa"), _count_flags),
    "train": ("Train QPA-LoRA or LoRA into a new run folder.", _lazy("qpa.cli.commands", "cmd_train"), tuple(SECTIONS), _train_flags),
    "runs": ("List runs, show one, or ask one to stop.", cmd_runs, (), _runs_flags),
    "eval": ("Validation loss and perplexity of a base model or of a run's adapter.", _lazy("qpa.cli.commands", "cmd_eval"),
             ("model", "data", "train"), _eval_flags),
    "export": ("Copy a run's adapter, or save the base model with it merged.", _lazy("qpa.cli.commands", "cmd_export"), (), _export_flags),
    "push": ("Push a run's adapter (or merged model) and its model card to the Hugging Face Hub.",
             _lazy("qpa.cli.commands", "cmd_push"), (), _push_flags),
    "chat": ("Chat with a base model or a trained run.", _lazy("qpa.cli.commands", "cmd_chat"), (), _chat_flags),
    "reproduce": ("Reproduce a paper result (WikiText-2 test perplexity) with its protocol.",
                  _lazy("qpa.cli.research", "cmd_reproduce"), (), _reproduce_flags),
    "sweep": ("Train named QPA variants and LoRA over seeds; print a comparison table.",
              _lazy("qpa.cli.research", "cmd_sweep"), tuple(SECTIONS), _sweep_flags),
    "compare": ("The fair protocol: tune every variant's lr on validation, report test "
                "perplexity over seeds against LoRA's.", _lazy("qpa.cli.research", "cmd_compare"),
                tuple(SECTIONS), _compare_flags),
    "variance": ("Barren plateaus: variance of cost gradients over random circuits, by N and L.",
                 _lazy("qpa.cli.research", "cmd_variance"), (), _variance_flags),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The `python -m qpa` parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m qpa",
        description="QPA Studio: count parameters, train, list runs, evaluate, export, chat, "
        "compare variants, reproduce the paper and explore gradient variance.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, handler, sections, extra) in COMMANDS.items():
        command = sub.add_parser(name, help=text, description=text, allow_abbrev=False)
        command.set_defaults(func=handler)
        if sections:
            help = "Start from this RunConfig JSON (e.g. a run's config.json); flags override it."
            _flag(command, "--config", help, metavar="FILE.json")
            add_config_flags(command, sections)
        extra(command)
    return parser


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename:
        return redact(f"{error.strerror}: {error.filename}")
    return redact(str(error))


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the subcommand and return its exit status.

    2 for user errors (ValueError, OSError), 1 for anything unexpected (one line, no
    traceback, unless ``QPA_DEBUG`` is set), 130 for Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    if launched_rank() > 0:  # one of the processes of `accelerate launch`: rank 0 alone prints
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("QPA_DEBUG"):
            raise
        if isinstance(e, (ValueError, OSError)):
            print(f"error: {_message(e)}", file=sys.stderr)
            return 2
        print(
            f"error: internal error ({type(e).__name__}: {_message(e)}); "
            "set QPA_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        return 1
