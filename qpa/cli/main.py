"""``python -m qpa``: count, train, list runs, evaluate, export, chat, sweep, reproduce, variance.

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
import json
import os
import sys
from pathlib import Path
from typing import Any

from qpa.config import SECTIONS, ModelConfig, RunConfig, field_help
from qpa.flags import add_config_flags, config_from_args
from qpa.runs.files import redact
from qpa.runs.run import Run, list_runs, open_run
from qpa.studies.sweep import BEST_MEASURED, VARIANTS, apply_variant

DEFAULT_MODEL = field_help(ModelConfig)["model"]["default"]  # = qpa.models.loading.DEFAULT_MODEL


def format_table(
    rows: list[tuple], header: tuple | None = None, right: tuple[int, ...] = ()
) -> str:
    """Rows as aligned text columns; columns listed in `right` are right-aligned.

    >>> print(format_table([("a", "1,000"), ("bb", "7")], ("what", "n"), right=(1,)))
    what      n
    a     1,000
    bb        7
    """
    rows = [tuple(str(c) for c in r) for r in ([header] if header else []) + rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    just = [str.rjust if i in right else str.ljust for i in range(len(widths))]
    return "\n".join(
        "  ".join(j(c, w) for j, c, w in zip(just, r, widths, strict=True)).rstrip() for r in rows
    )


def load_config(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """``--config FILE`` (else `base`, else defaults), then ``--variant NAME``'s overrides, then
    the given flags: what is typed explicitly wins."""
    if getattr(args, "config", None):
        text = Path(args.config).read_text(encoding="utf-8", errors="replace")
        try:
            base = RunConfig.from_json(text)
        except ValueError as e:
            raise ValueError(f"`config` = {args.config!r}: {e}") from None
    if getattr(args, "variant", None) is not None:
        base = apply_variant(base or RunConfig(), args.variant)
    return config_from_args(args, base)


# -- count --------------------------------------------------------------------------------------


def cmd_count(args: argparse.Namespace) -> int:
    config = load_config(args)  # bad flags fail before torch is imported
    from qpa.adapters.counts import count_params

    counts = count_params(config.model.model, config.adapter, config.qpa)
    if args.json:
        print(json.dumps(counts.to_dict(), indent=2))
    else:
        print(
            f"{config.model.model}: rank {config.adapter.rank}, chunk_size {config.qpa.chunk_size:,}"
        )
        print(format_table(counts.table(), ("", "parameters", "note"), right=(1,)))
    return 0


# -- runs ---------------------------------------------------------------------------------------


def format_number(value: Any, spec: str = ".3f") -> str:
    """`value` formatted with `spec`, or "-" when it is not a number (e.g. not measured yet)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s" if m else f"{s}s"


def cmd_runs(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show_run(open_run(args.run_id, args.runs_dir), args.json)
    if args.action == "cancel":
        print(open_run(args.run_id, args.runs_dir).cancel())
        return 0
    rows = [run.summary() for run in list_runs(args.runs_dir)]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no runs under {args.runs_dir or os.environ.get('QPA_RUNS') or 'runs'}")
    else:
        header = ("id", "method", "model", "state", "step", "val ppl", "best", "base", "params",
                  "time")  # fmt: skip
        table = [
            (r["id"], r["method"], r["model"], state_text(r), f"{r['step']}/{r['total_steps']}",
             format_number(r["val_perplexity"]), format_number(r["best_step"], "d"),
             format_number(r["base_perplexity"]), format_number(r["trainable_params"], ","),
             _duration(r["wall_time_s"]))
            for r in rows
        ]  # fmt: skip
        print(format_table(table, header, right=(4, 5, 6, 7, 8, 9)))
    return 0


def state_text(row: dict[str, Any]) -> str:
    """A run's state, flagged when its exported step is worse than the base model.

    >>> state_text({"state": "done", "worse_than_base": True})
    'done (worse than the base model)'
    """
    return row["state"] + (" (worse than the base model)" if row.get("worse_than_base") else "")


def _show_run(run: Run, as_json: bool) -> int:
    status, metrics = run.status(), run.metrics()
    last = {
        split: [m for m in metrics if m.get("split") == split][-1:] for split in ("train", "val")
    }
    info = {"id": run.id, "path": str(run.path), "config": run.config.to_dict(), "status": status,
            "last_metrics": [m for ms in last.values() for m in ms],
            "adapter": str(run.adapter_dir) if run.has_adapter() else None}  # fmt: skip
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("config", "status", "last_metrics"):
        print(f"{key}:\n{json.dumps(info[key], indent=2)}")
    print(f"adapter: {info['adapter'] or '(none yet)'}")
    print(outcome(status.get("result") or {}) or "result: (not finished)")
    return 0


def outcome(result: dict[str, Any]) -> str:
    """A finished run's result in one line: the exported step against the base model.

    >>> print(outcome({"exported_step": 50, "best_step": 50, "val_assistant_perplexity": 9.5,
    ...   "val_perplexity": 12.0, "base_perplexity": 10.0, "base_headline": "replies",
    ...   "worse_than_base": False}))
    exported step 50 (the best): validation perplexity (replies) 9.500, base model 10.000
    """
    if "exported_step" not in result:
        return ""
    what = result.get("base_headline", "all tokens")
    ppl = result.get("val_assistant_perplexity" if what == "replies" else "val_perplexity")
    best = " (the best)" if result["exported_step"] == result.get("best_step") else " (the last)"
    worse = "; worse than the base model" if result.get("worse_than_base") else ""
    return (
        f"exported step {result['exported_step']}{best}: validation perplexity ({what}) "
        f"{format_number(ppl)}, base model {format_number(result.get('base_perplexity'))}{worse}"
    )


# -- parser and entry point -----------------------------------------------------------------------


def _lazy(name: str, module: str = "qpa.cli.commands"):
    """A handler that imports `module` (heavy) only when the subcommand runs."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), f"cmd_{name}")(args)

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
    _flag(p, "--dry-run", "Check the config and print the plan (examples, epochs, evaluations) "
          "and its warnings; train nothing, write nothing.", action="store_true")  # fmt: skip
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


def _chat_flags(p) -> None:
    which = p.add_mutually_exclusive_group()
    _flag(which, "--model", f"Base model to chat with (default: {DEFAULT_MODEL}).")
    _flag(which, "--run", "Chat with this run's model and exported adapter.", metavar="RUN_ID")
    _flag(p, "--prompt", "Answer this one message and exit (else: read lines from stdin).")
    _flag(p, "--system", "A system message put before the conversation.")
    _flag(
        p,
        "--max-new-tokens",
        "Longest reply in tokens, 1-2048 (default: 128).",
        type=int,
        default=128,
        metavar="N",
    )
    _flag(
        p,
        "--temperature",
        "Sampling temperature; 0 is greedy (default: 0.7).",
        type=float,
        default=0.7,
        metavar="X",
    )
    _flag(
        p,
        "--top-p",
        "Nucleus sampling mass in (0, 1] (default: 0.9).",
        type=float,
        default=0.9,
        metavar="X",
    )
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


def _reproduce_flags(p) -> None:
    p.add_argument("recipe", nargs="?", help="The recipe to run; none lists them.")
    _flag(p, "--list", "List the recipes and exit.", action="store_true")
    _flag(p, "--dry-run", "Print the resolved config, the paper's figures and the parameter "
          "counts; train nothing.", action="store_true")  # fmt: skip
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
    _flag(p, "--qubits", "Comma-separated qubit counts N (default: 2,4,6,8,10).", default="2,4,6,8,10")
    _flag(p, "--depths", "Comma-separated depths L (default: 1,8,32).", default="1,8,32")
    _flag(p, "--samples", "Random circuits per (N, L), θ ~ U(−π, π) (default: 200).", type=int,
          default=200, metavar="S")  # fmt: skip
    _flag(p, "--cost", "`local` (⟨Z₀⟩), `global` (P(|0…0⟩)) or `generator` (the whole QPA "
          "generator and a quadratic loss on its output) (default: local).", default="local")  # fmt: skip
    _flag(p, "--seed", "Seed of the random angles and of the generator (default: 0).", type=int,
          default=0, metavar="N")  # fmt: skip
    _flag(p, "--entangler", "`ladder` or `ring` (default: ladder).", default="ladder")
    _flag(p, "--noise", "Depolarising probability per qubit after each block (default: 0).",
          type=float, default=0.0, metavar="P")  # fmt: skip
    _flag(p, "--json", "Print the rows and the fitted decay rates as JSON.", action="store_true")


COMMANDS = {  # name: (help, handler, config sections given as flags, extra flags)
    "count": ("Count trainable parameters of LoRA and QPA for a model.", cmd_count,
              ("model", "adapter", "qpa"), _count_flags),
    "train": ("Train QPA-LoRA or LoRA into a new run folder.", _lazy("train"), tuple(SECTIONS), _train_flags),
    "runs": ("List runs, show one, or ask one to stop.", cmd_runs, (), _runs_flags),
    "eval": ("Validation loss and perplexity of a base model or of a run's adapter.", _lazy("eval"),
             ("model", "data", "train"), _eval_flags),
    "export": ("Copy a run's adapter, or save the base model with it merged.", _lazy("export"), (), _export_flags),
    "chat": ("Chat with a base model or a trained run.", _lazy("chat"), (), _chat_flags),
    "reproduce": ("Reproduce a paper result (WikiText-2 test perplexity) with its protocol.",
                  _lazy("reproduce", "qpa.cli.research"), (), _reproduce_flags),
    "sweep": ("Train named QPA variants and LoRA over seeds; print a comparison table.",
              _lazy("sweep", "qpa.cli.research"), tuple(SECTIONS), _sweep_flags),
    "variance": ("Barren plateaus: variance of cost gradients over random circuits, by N and L.",
                 _lazy("variance", "qpa.cli.research"), (), _variance_flags),
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
