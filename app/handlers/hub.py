"""Runs tab, Hub section: push a finished run to the Hugging Face Hub, and the notice that runs
are temporary on a Space without persistent storage.

On a Space the token is the visitor's own (Gradio's Hugging Face login, OAuth); the Space's own
``HF_TOKEN`` is never used for a visitor's push. Elsewhere the studio's user pushes with
``$HF_TOKEN``, as the CLI does.
"""

from __future__ import annotations

import gradio as gr

from app.handlers.common import USER_ERRORS
from app.state import Studio
from qpa import open_run, push_run

TEMPORARY = (
    "**Runs are temporary on this Space.** It has no persistent storage, so every run is lost "
    "when the Space restarts. Download each finished run's adapter (.zip) or push it to the "
    "Hugging Face Hub below; the Space's owner can add persistent storage in its settings."
)


MIRRORED = (
    "**Runs in progress are lost when this Space restarts** (it has no persistent storage). "
)


def notice(studio: Studio) -> str:
    """The "runs are temporary" notice where runs do not outlive a restart, and where finished
    runs are mirrored to a Hub dataset, that line; else ''."""
    mirror = studio.mirror.describe() if studio.mirror is not None else ""
    if studio.settings.persistent:
        return mirror
    return MIRRORED + mirror if mirror else TEMPORARY


def push(studio: Studio, run_id: str | None, repo: str, private: bool, merged: bool,
         token: str | None) -> str:  # fmt: skip
    """Push the run; returns a line with the repo's URL. ValueError for every user error."""
    if not run_id:
        raise ValueError("`run`: open a finished run above first.")
    if studio.settings.on_spaces and not token:
        how = (
            "log in with your Hugging Face account (the button above) to push to your own repos"
            if studio.settings.login
            else "this Space has no Hugging Face login (its owner enables `hf_oauth: true`); "
            "download the adapter instead"
        )
        raise ValueError(f"`token`: {how}. A Space never pushes with its owner's token.")
    run = open_run(run_id, studio.root)
    url = push_run(
        run, (repo or "").strip(), token=token, private=bool(private), merged=bool(merged)
    )
    return f"Pushed run `{run_id}` to {url}"


def on_push(studio: Studio, run_id, repo, private, merged, token: str | None = None) -> str:
    """The button's handler: the result line, or the error as a warning and on the page."""
    try:
        return push(studio, run_id, repo, private, merged, token)
    except USER_ERRORS as e:
        gr.Warning(str(e))
        return f"Not pushed: {e}"
