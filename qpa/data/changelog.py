"""The second built-in corpus, ``gradio-changelog``: plain English text from an installed package.

Gradio's wheel ships its release notes, ``gradio/CHANGELOG.md`` (850 kB, pinned with
``gradio==6.31.0`` in requirements.txt, so every install reads the same text). Each bullet is one
human-written English sentence or two about a change ("Fix the chatbot's copy button when ...").
Links, pull-request numbers, commit hashes and the "Thanks @user!" are stripped: random
hex digits and URLs would dominate a perplexity and say nothing about language. The package is
located with `importlib.util.find_spec` and never imported (`qpa` does not import gradio).

>>> clean_entry("- [#12](https://x.y/pull/12) [`abc1234`](https://x.y/c/abc1234) - Fix `x`.  Thanks @me!")
'Fix `x`.'
>>> clean_entry("## 5.7.1") is None
True
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import re

CHANGELOG_CORPUS = "gradio-changelog"
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")  # [text](url) → text
_HEAD = re.compile(r"^#\d+\s+`?[0-9a-f]{7,40}`?\s+-\s+|^`?[0-9a-f]{7,40}`?\s+-\s+")
_THANKS = re.compile(r"\s*Thanks @[\w.-]+!?")
_BREAK = re.compile(r"/n(?=\s)")  # some entries spell their line breaks "/n"


def changelog_path() -> pathlib.Path:
    """Where the installed gradio keeps its CHANGELOG.md (ValueError without gradio)."""
    spec = importlib.util.find_spec("gradio")
    path = pathlib.Path(spec.origin).parent / "CHANGELOG.md" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ValueError(
            f"`corpus` = {CHANGELOG_CORPUS!r} reads gradio's CHANGELOG.md: pip install gradio==6.31.0"
        )
    return path


def clean_entry(line: str) -> str | None:
    """One changelog bullet as plain text, or None for any other line (headings, prose, code)."""
    if not line.startswith("- "):
        return None
    text = _THANKS.sub("", _HEAD.sub("", _LINK.sub(r"\1", line[2:]).strip()))
    return _BREAK.sub("\n", text).strip() or None


@functools.cache
def read_changelog() -> tuple[str, ...]:
    """Every cleaned changelog entry, in file order (one text each)."""
    lines = changelog_path().read_text(encoding="utf-8").splitlines()
    return tuple(t for t in map(clean_entry, lines) if t)
