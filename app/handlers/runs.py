"""Runs tab: every run under the runs root as a table, curves of several overlaid, one run's
config and log, and its exported adapter as a zip.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import tempfile
import zipfile
from pathlib import Path

import gradio as gr

from app import plots
from app.handlers.common import as_run_ids, guarded
from app.handlers.progress import latest_launch, series
from app.state import Studio
from qpa import format_duration, format_number, list_runs, open_run

HEADERS = [
    "run", "method", "model", "trainable params", "val PPL, all tokens", "val PPL, assistant",
    "best step", "base model PPL", "time", "status",
]  # fmt: skip


def table_rows(studio: Studio) -> list[list]:
    """One row per run, newest first; perplexity over all tokens and over assistant replies (of
    the exported step once done), its step, the base model's perplexity on the same data (the
    replies' on chat data), and a status that says when the run ended worse than the base."""
    rows = []
    for run in list_runs(studio.root):
        r = run.summary()
        state = r["state"] if r["state"] == "done" else f"{r['state']} ({r['step']}/{r['total_steps']})"
        state += " · worse than the base model" if r["worse_than_base"] else ""
        rows.append(
            [
                r["id"],
                r["method"],
                r["model"],
                format_number(r["trainable_params"] or None, ","),
                format_number(r["val_perplexity"], ".3f"),
                format_number(r["val_assistant_perplexity"], ".3f"),
                format_number(r["best_step"], "d"),
                format_number(r["base_perplexity"], ".3f"),
                format_duration(r["wall_time_s"]),
                state,
            ]
        )
    return rows


def run_details(studio: Studio, run_id: str) -> tuple[str, str, str | None]:
    """(config JSON, log tail without tracebacks, path of a zip of the adapter or None)."""
    run = open_run(run_id, studio.root)
    config = json.dumps(run.config.to_dict(), indent=2)
    log = without_tracebacks(run.log_text(300)) or "(no log yet)"
    return config, log, zip_adapter(studio, run_id)


def without_tracebacks(log: str) -> str:
    """A ``train.log`` text with each Python traceback cut to its last line (the error): the
    frames name server paths, and stay in the file for the operator.

    >>> print(without_tracebacks("t0 start\\nt1 Traceback (most recent call last):\\n"
    ...                          "t1   File 'x.py', line 1\\nt1 ValueError: bad\\nt2 end"))
    t0 start
    t1 ValueError: bad (traceback in train.log on the server)
    t2 end
    """
    out, inside = [], False
    for line in log.splitlines():
        text = line.split(" ", 1)[-1]  # after the timestamp
        if text.startswith("Traceback (most recent call last):"):
            inside = True
        elif inside and not text.startswith(" "):
            inside = False
            out.append(f"{line} (traceback in train.log on the server)")
        elif not inside:
            out.append(line)
    return "\n".join(out) + ("\n" if out and log.endswith("\n") else "")


def adapter_files(studio: Studio, run_id: str) -> list[Path]:
    """The regular files of a run's adapter folder, all inside the runs root: a symlink (to
    anywhere) is never followed, and a folder that resolves outside the root is refused."""
    run = open_run(run_id, studio.root)
    root, folder = studio.root.resolve(), run.adapter_dir
    if folder.is_symlink() or not folder.resolve().is_relative_to(root):
        raise ValueError(f"`run` {run_id!r}: its adapter folder is outside {studio.root}.")
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):
            raise ValueError(f"`run` {run_id!r}: {path.name} is outside {studio.root}.")
        files.append(path)
    return files


@functools.cache
def _downloads_dir() -> Path:
    """This process's private (0700) folder of adapter zips (gradio serves them from here)."""
    return Path(tempfile.mkdtemp(prefix="qpa-downloads-"))


def zip_adapter(studio: Studio, run_id: str) -> str | None:
    """A zip of the run's adapter (see `adapter_files`) in a private temp folder, or None.

    Written beside its final name and renamed, so a download never sees half a zip.
    """
    if not open_run(run_id, studio.root).has_adapter():
        return None
    final = _downloads_dir() / f"{run_id}-adapter.zip"
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in adapter_files(studio, run_id):
                archive.write(path, arcname=path.name)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return str(final)


# -- event handlers -------------------------------------------------------------------------------


@guarded
def on_refresh(studio: Studio, selected: list[str] | None):
    """Refresh: the table, the run pickers (keeping valid choices) and the overlay."""
    rows = table_rows(studio)
    ids = [r[0] for r in rows]
    keep = [i for i in as_run_ids("runs", selected) if i in ids] or latest_launch(studio, pair=True)
    overlay = plots.curves_figure(series(studio, keep))
    return (
        gr.update(value=rows),
        gr.update(choices=ids, value=keep),
        gr.update(choices=ids),
        overlay,
    )


@guarded
def on_overlay(studio: Studio, selected: list[str] | None):
    """Runs picked for the overlay changed: redraw their curves together."""
    return plots.curves_figure(series(studio, as_run_ids("runs", selected)))


@guarded
def on_open(studio: Studio, run_id: str | None):
    """A run picked: show its config and log; offer its adapter for download."""
    if not run_id:
        return "", "", gr.update(value=None, interactive=False)
    config, log, archive = run_details(studio, run_id)
    button = gr.update(
        value=archive,
        interactive=archive is not None,
        label="Download adapter (.zip)" if archive else "No adapter yet",
    )
    return config, log, button


@guarded
def on_table_select(studio: Studio, rows, evt: gr.SelectData):
    """Clicking a table row opens that run."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    value = rows.iloc[row, 0] if hasattr(rows, "iloc") else rows[row][0]
    return gr.update(value=value)
