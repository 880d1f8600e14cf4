"""Data section of the Train tab: the embedded chat corpus by topic, or an uploaded file,
checked on upload and previewed the way the model will read it (its chat template applied).
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from app.handlers.common import as_int, as_names, check_model, guarded
from app.state import Studio
from qpa import (
    SHAPE_PRESETS,
    TINY_PRESETS,
    DataConfig,
    chatterbot_topics,
    check_upload,
    get_chat_model,
    load_model,
    preview,
)

SOURCES = ("chatterbot corpus", "uploaded file")
UPLOAD_TYPES = [".txt", ".md", ".jsonl", ".csv", ".yml", ".yaml"]
PREVIEW_N = 3
DATA_FIELDS = ("source", "topics", "upload", "max_length", "max_examples")  # the form's data


def topics() -> list[str]:
    """The embedded corpus's topics (empty when chatterbot-corpus is not installed)."""
    try:
        return chatterbot_topics()
    except ValueError:
        return []


def _path(upload: Any) -> str | None:
    if upload is None:
        return None
    return str(getattr(upload, "name", upload))


def data_config(form: Mapping[str, Any]) -> DataConfig:
    """The DataConfig of the form's `DATA_FIELDS` (other fields are not read); ValueError for
    a missing or unusable upload."""
    source = form["source"]
    if source == SOURCES[1]:
        path = _path(form["upload"])
        if not path:
            raise ValueError("`corpus`: choose a file to upload, or use the chatterbot corpus.")
        check_upload(path)
        corpus, chosen = path, ()
    elif source == SOURCES[0]:
        corpus, chosen = "chatterbot", as_names(form["topics"], "topics")
        unknown = [t for t in chosen if t not in topics()]
        if unknown:
            raise ValueError(
                f"`topics`: unknown topic(s) {', '.join(unknown)}; valid: {', '.join(topics())}."
            )
    else:
        raise ValueError(f"`corpus` source {source!r} is not one of: {', '.join(SOURCES)}.")
    return DataConfig(
        corpus=corpus,
        topics=chosen,
        max_length=as_int("max_length", form["max_length"]),
        max_examples=as_int("max_examples", form["max_examples"]),
    )


@functools.lru_cache(maxsize=4)
def _tokenizer(model: str):
    if model in TINY_PRESETS:
        return load_model(model)[1]
    return get_chat_model(model).tokenizer  # the chat tab reuses this loaded model


def preview_html(model: str, cfg: DataConfig, n: int = PREVIEW_N) -> str:
    """How many examples a run will use and the first `n` as the model reads them."""
    if model in SHAPE_PRESETS:  # no tokenizer: render with the tiny presets' ChatML template
        tokenizer, note = (
            _tokenizer("tiny-llama"),
            "in ChatML (a shape-only preset has no tokenizer)",
        )
    else:
        tokenizer, note = _tokenizer(model), f"as {model} reads them (its chat template applied)"
    examples = preview(cfg, tokenizer, cfg.max_examples or 10**9)
    where = (
        ", ".join(cfg.topics)
        if cfg.topics
        else ("all topics" if cfg.corpus == "chatterbot" else Path(cfg.corpus).name)
    )
    held_out = max(1, round(cfg.val_fraction * len(examples)))
    blocks = "".join(f"<pre class='qpa-example'>{html.escape(s)}</pre>" for s in examples[:n])
    return (
        f"<p><b>{len(examples):,} examples</b> from {html.escape(where)} ({held_out:,} held out "
        f"for validation). The first {min(n, len(examples))}, {html.escape(note)}:</p>{blocks}"
    )


# -- event handlers -------------------------------------------------------------------------------


def on_upload(upload):
    """A file arrived: refuse it with the reason (and clear it) when it is not a usable corpus."""
    path = _path(upload)
    if not path:
        return gr.skip(), gr.skip()
    try:
        check_upload(path)
    except (ValueError, OSError) as e:
        gr.Warning(str(e))
        return None, gr.skip()
    return gr.skip(), gr.update(value=SOURCES[1])


def on_source(source):
    """Show the topic picker for the embedded corpus, the file box for an upload."""
    upload = source == SOURCES[1]
    return gr.update(visible=not upload), gr.update(visible=upload)


@guarded
def on_preview(studio: Studio, form: dict[str, Any]) -> str:
    """Preview button (the ``model`` and `DATA_FIELDS`): what the run will train on (read by a
    model this studio may load)."""
    model = check_model(studio.caps.any_model, form["model"])
    return preview_html(model, data_config(form))
