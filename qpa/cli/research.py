"""The research subcommands: ``sweep`` (variants × seeds), ``compare`` (the fair protocol),
``reproduce`` (the paper's recipes) and ``variance`` (barren plateaus). Imported lazily by `qpa.cli.main` like `qpa.cli.commands`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qpa.cli.commands import ProgressBar, settle_run
from qpa.cli.run_config import load_config
from qpa.formatting import format_table
from qpa.runs.store import list_runs
from qpa.safe_io import dumps
from qpa.training.launch import launched_rank

# -- sweep --------------------------------------------------------------------------------------


def cmd_sweep(args: argparse.Namespace) -> int:
    from qpa.studies.results import run_record, summarize
    from qpa.studies.sweep import VARIANTS, sweep

    if args.list:
        for name, variant in VARIANTS.items():
            print(f"{name:<16} {variant.help}")
        return 0
    if args.report:
        start = f"{args.prefix}-" if args.prefix else ""
        runs = [r for r in list_runs(args.runs_dir) if r.id.startswith(start)]
        return _print_summary(summarize([r for r in map(run_record, runs) if r is not None]), args)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"`seeds` = {args.seeds!r} must be whole numbers, e.g. 0,1,2.") from None

    bar = ProgressBar()  # closes itself when a run is done and reopens for the next
    try:
        rows = sweep(load_config(args), names, seeds, args.prefix, args.runs_dir, _announce, [bar])
    finally:
        bar.close()
    if launched_rank() > 0:  # under `accelerate launch`, rank 0 alone prints and writes
        return 0
    return _print_summary(rows, args)


def _print_summary(rows: list[dict], args: argparse.Namespace) -> int:
    from qpa.studies.results import markdown_table

    if not rows:
        raise ValueError("No finished runs to tabulate; train some first (`python -m qpa sweep`).")
    table = markdown_table(rows)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    if args.json:
        print(dumps([{k: v for k, v in r.items() if k != "config"} for r in rows], indent=2))
    else:
        print(table)
    return 0


# -- compare ------------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from qpa.flags import section_from_args, set_flags
    from qpa.studies import compare as protocol
    from qpa.studies import compare_report as report
    from qpa.tool_config import CompareConfig

    if args.report:
        result = protocol.load_result(args.prefix, args.runs_dir)
    else:
        chosen = [f"`{k.split('.')[1]}`" for k in ("train.lr", "train.seed") if k in set_flags(args)]
        if chosen:
            raise ValueError(f"{' and '.join(chosen)}: compare picks them from `lr_grid` and "
                             "`seeds`; give --lr-grid or --seeds instead.")  # fmt: skip
        settings = section_from_args(args, CompareConfig)
        plan = protocol.plan_comparison(load_config(args), settings, args.prefix)
        if args.dry_run:
            print(report.format_plan(plan, protocol.existing_runs(plan, args.runs_dir)))
            return 0
        bar = ProgressBar()
        try:
            result = protocol.run_comparison(plan, args.runs_dir, _announce, [bar])
        finally:
            bar.close()
        if launched_rank() > 0:  # under `accelerate launch`, rank 0 alone prints and writes
            return 0
    if args.markdown:
        text = f"{report.describe_comparison(result)}\n\n{report.comparison_table(result)}\n"
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.svg:
        Path(args.svg).write_text(report.frontier_svg(result), encoding="utf-8")
    if args.json:
        print(dumps(result, indent=2))
    else:
        print(f"{report.describe_comparison(result)}\n\n{report.comparison_table(result)}")
    return 0


def _announce(run_id: str, i: int, n: int) -> None:
    if launched_rank() == 0:  # under `accelerate launch`, rank 0 alone speaks
        print(f"[{i + 1}/{n}] {run_id}", file=sys.stderr)


# -- reproduce ----------------------------------------------------------------------------------


def cmd_reproduce(args: argparse.Namespace) -> int:
    from qpa.cli import reproduce_report as report
    from qpa.flags import set_flags
    from qpa.studies import reproduce as recipes

    if args.list or not args.recipe:
        listing = {name: r.title for name, r in recipes.RECIPES.items()}
        print(dumps(listing, indent=2) if args.json else report.list_recipes())
        return 0
    plan = recipes.plan_recipe(args.recipe, overrides=set_flags(args), epochs=args.epochs)
    if args.dry_run:
        from qpa.cli.commands import dry_run_estimate

        estimate, text = dry_run_estimate(plan.config)
        print(dumps({**plan.to_dict(), "estimate": estimate}, indent=2) if args.json
              else f"{report.format_plan(plan)}\n{text}")  # fmt: skip
        return 0
    from qpa.runs.store import create_run
    from qpa.training.distributed import world_for
    from qpa.training.session import pick_device

    config = recipes.check_plan(plan)  # unreachable data, bad flags: nothing is written
    world = world_for(pick_device(config.train.device))  # one process, or an accelerate launch

    def start():
        run = create_run(config, args.runs_dir, args.name)
        run.claim(token="cli")
        run.lock()
        return run

    run = world.lead(start)  # rank 0 writes; the others train beside it (then leave: the test
    if not world.is_main:  # split is evaluated by rank 0 alone)
        from qpa.training.loop import train

        train(plan.config)
        return 0
    print(f"run {run.id} in {run.path}", file=sys.stderr)
    bar = ProgressBar()
    try:
        result = recipes.run_recipe(plan, run, callbacks=[bar])
    except Exception as e:
        settle_run(run, "failed", f"{type(e).__name__}: {e}")
        raise
    finally:
        bar.close()
        run.unlock()
    print(dumps(result, indent=2) if args.json else report.format_result(result))
    return {"done": 0, "cancelled": 130}.get(result["state"], 1)


# -- variance -----------------------------------------------------------------------------------


def cmd_variance(args: argparse.Namespace) -> int:
    from qpa.config import QPAConfig
    from qpa.studies.variance import COSTS, fit_decay, gradient_variance

    config = QPAConfig(entangler=args.entangler, noise=args.noise)
    rows = gradient_variance(args.qubits, args.depths, args.samples, args.cost, args.seed, config)
    fits = fit_decay(rows)
    if args.json:
        print(dumps({"rows": rows, "fits": fits}, indent=2))
        return 0
    print(f"Var[∂C/∂θ] over {args.samples} random circuits, θ ~ U(−π, π); {args.entangler}, "
          f"noise {args.noise:g}; cost {args.cost}: {COSTS[args.cost]}")  # fmt: skip
    header = ("N", "L", "Var, mean over angles", "Var of θ[0,0]", "seconds")
    table = [(r["n_qubits"], r["depth"], f"{r['variance']:.3e}", f"{r['variance_first']:.3e}",
              f"{r['seconds']:.2f}") for r in rows]  # fmt: skip
    print(format_table(table, header, right=(0, 1, 2, 3, 4)))
    for fit in fits:
        qubits = ",".join(map(str, fit["qubits"]))
        print(f"L = {fit['depth']}: variance × {fit['factor_per_qubit']:.3f} per added qubit "
              f"(log₂ slope {fit['log2_slope']:.3f}, fit over N = {qubits})")  # fmt: skip
    return 0
