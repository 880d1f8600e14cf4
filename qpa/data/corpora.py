"""Corpus readers: text in, chat conversations or plain texts out (no tokenizer here).

A corpus is either a list of conversations, each a list of ``{"role", "content"}`` messages
(roles ``system``/``user``/``assistant``), or a list of plain texts. `qpa.data.splits` checks the
upload itself (size, encoding) and turns either kind into token tensors.

The embedded corpus is ``chatterbot-corpus``: one YAML file per topic, each holding
``conversations: [[question, answer, ...], ...]``. YAML is read with PyYAML's safe loader
only, so tags that would construct Python objects are refused, and so are aliases (``*name``):
a few hundred bytes of nested aliases expand to gigabytes (a "billion laughs").

>>> chatterbot_topics()[:3]
['ai', 'botprofile', 'coding']
>>> parse_jsonl('{"text": "one"}\\n\\n{"text": "two"}', "a.jsonl")
['one', 'two']
>>> parse_yaml("conversations:\\n- [Hi, 42]", "a.yml")
[[{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': '42'}]]
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import json
import os
import pathlib
import re
import socket
import urllib.parse
from typing import Any

import yaml

Conversation = list[dict[str, str]]
ROLES = ("system", "user", "assistant")
CHATTERBOT_LANGUAGE = "english"


def chatterbot_dir() -> pathlib.Path:
    """The folder of the installed chatterbot-corpus package's English YAML files."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or spec.origin is None:
        raise ValueError(
            "`corpus` = 'chatterbot' needs the chatterbot-corpus package: "
            "pip install chatterbot-corpus==1.3.3"
        )
    return pathlib.Path(spec.origin).parent / "data" / CHATTERBOT_LANGUAGE


def chatterbot_topics() -> list[str]:
    """Names of the chatterbot topics (file stems), sorted."""
    return sorted(p.stem for p in chatterbot_dir().glob("*.yml"))


def read_chatterbot(topics: tuple[str, ...] | list[str] = ()) -> list[Conversation]:
    """Conversations of the given topics (all when empty), in topic then file order."""
    valid = chatterbot_topics()
    unknown = [t for t in topics if t not in valid]
    if unknown:
        raise ValueError(
            f"`topics` = {','.join(topics)!r}: unknown topic(s) {', '.join(unknown)}; "
            f"valid topics: {', '.join(valid)}."
        )
    chosen = sorted(set(topics)) if topics else valid
    return [_messages(conv) for topic in chosen for conv in _chatterbot_file(topic)]


@functools.cache
def _chatterbot_file(topic: str) -> tuple[tuple[str, ...], ...]:
    """One topic's conversations as text tuples; parsed once per process (the files are read-only)."""
    path = chatterbot_dir() / f"{topic}.yml"
    convs = parse_yaml(path.read_text(encoding="utf-8"), path.name)
    return tuple(tuple(m["content"] for m in conv) for conv in convs)


def _messages(turns: tuple[str, ...] | list[str]) -> Conversation:
    """[q, a, q, ...] → alternating user/assistant messages."""
    return [{"role": ROLES[1 + i % 2], "content": text} for i, text in enumerate(turns)]


def as_text(value: Any) -> str:
    """A YAML/JSON/CSV cell as text: numbers and booleans spelled out, lists joined by lines.

    >>> as_text([1, "two", None]), as_text(3.5), as_text(True)
    ('1\\ntwo', '3.5', 'true')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "\n".join(t for t in (as_text(v) for v in value) if t)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _not_too_deep(parse):
    """`parse(text, name)`, with data nested past Python's recursion limit a ValueError."""

    @functools.wraps(parse)
    def checked(text: str, name: str):
        try:
            return parse(text, name)
        except RecursionError:
            raise ValueError(f"`corpus` = {name!r} is nested too deeply to be read.") from None

    return checked


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, refusing an alias before anything expands it."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)


@_not_too_deep
def parse_yaml(text: str, name: str) -> list[Conversation]:
    """A chatterbot-shaped YAML document → conversations (those with at least an answer).

    >>> parse_yaml("a: &x [Hi]\\nconversations: [*x]", "bomb.yml")
    Traceback (most recent call last):
    ...
    ValueError: `corpus` = 'bomb.yml': line 2: malformed YAML: aliases (*name) are not allowed.
    """
    loader = _NoAliasLoader(text)  # what yaml.safe_load does, with aliases refused
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        raise ValueError(_yaml_error(name, e)) from None
    finally:
        loader.dispose()
    shape = (
        f"`corpus` = {name!r} is not chatterbot-shaped YAML: expected a mapping with "
        "`conversations: [[question, answer, ...], ...]`"
    )
    if not isinstance(data, dict) or not isinstance(data.get("conversations"), list):
        raise ValueError(f"{shape}; got {type(data).__name__}.")
    convs = []
    for i, conv in enumerate(data["conversations"], 1):
        if isinstance(conv, dict):
            raise ValueError(f"{shape}; conversation {i} is a mapping, not a list.")
        turns = [as_text(t).strip() for t in conv] if isinstance(conv, list) else []
        if len(turns) >= 2:  # a lone question (trivia.yml has one, as a bare string) is skipped
            convs.append(_messages(turns))
    return convs


def _yaml_error(name: str, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f" line {mark.line + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if isinstance(e, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = re.search(r"'([^']*)'", problem)
        problem = f"tag {tag.group(1) if tag else ''} is not allowed (plain YAML only)"
    return f"`corpus` = {name!r}:{where}: malformed YAML: {problem}."


@_not_too_deep
def parse_jsonl(text: str, name: str) -> list[Conversation] | list[str]:
    """One JSON object per line: ``{"text": ...}`` or ``{"messages": [{"role", "content"}, ...]}``."""
    texts, convs = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"`corpus` = {name!r} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: malformed JSON ({e.msg}, column {e.colno}).") from None
        if isinstance(row, dict) and "messages" in row:
            convs.append(_json_messages(row["messages"], where))
        elif isinstance(row, dict) and "text" in row:
            texts.append(as_text(row["text"]))
        else:
            raise ValueError(f'{where}: expected {{"text": ...}} or {{"messages": [...]}}.')
        if texts and convs:
            raise ValueError(f"{where}: mixes `text` and `messages` lines; use one kind per file.")
    return convs or texts


def _json_messages(messages: Any, where: str) -> Conversation:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: `messages` must be a non-empty list.")
    out = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or "content" not in m:
            raise ValueError(
                f"{where}: each message needs `role` ({', '.join(ROLES)}) and `content`; got {m!r}."
            )
        out.append({"role": m["role"], "content": as_text(m["content"])})
    return out


def parse_csv(text: str, name: str) -> list[Conversation] | list[str]:
    """First row is the header: a `text` column gives texts; exactly 2 columns give user/assistant."""
    rows = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(rows, [])]
        if "text" in header:
            col = header.index("text")
            return [r[col] for r in rows if len(r) > col and r[col].strip()]
        if len(header) != 2:
            raise ValueError(
                f"`corpus` = {name!r}: the CSV header {header} has no `text` column and is not "
                "2 columns (user, assistant)."
            )
        convs = []
        for r in rows:
            if len(r) != 2:
                raise ValueError(
                    f"`corpus` = {name!r} line {rows.line_num}: {len(r)} columns, expected 2."
                )
            convs.append(_messages([r[0].strip(), r[1].strip()]))
        return convs
    except csv.Error as e:
        raise ValueError(
            f"`corpus` = {name!r} line {rows.line_num}: malformed CSV ({e})."
        ) from None


def parse_paragraphs(text: str) -> list[str]:
    """Plain text → paragraphs (split on blank lines).

    >>> parse_paragraphs("a\\nb\\n\\n \\n c ")
    ['a\\nb', 'c']
    """
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


PARSERS = {
    ".txt": lambda text, name: parse_paragraphs(text),
    ".md": lambda text, name: parse_paragraphs(text),
    ".jsonl": parse_jsonl,
    ".csv": parse_csv,
    ".yml": parse_yaml,
    ".yaml": parse_yaml,
}


def parse_lines(text: str) -> list[str]:
    """Plain text → one text per line, verbatim with its line end; blank lines become "".

    This is how the Hub's WikiText rows look, so a local file can stand in for them.

    >>> parse_lines(" = A = \\n\\n x y \\n")
    [' = A = \\n', '', ' x y \\n']
    """
    return [line if line.strip() else "" for line in text.splitlines(keepends=True)]


def hub_source(corpus: str) -> tuple[str, str | None, str]:
    """``hf:NAME[:CONFIG][@SPLIT]`` → (dataset name, config or None, split; `train` by default).

    >>> hub_source("hf:Salesforce/wikitext:wikitext-2-raw-v1@test")
    ('Salesforce/wikitext', 'wikitext-2-raw-v1', 'test')
    """
    spec, _, split = corpus.removeprefix("hf:").partition("@")
    name, _, config = spec.partition(":")
    if not name or "@" in split:
        raise ValueError(f"`corpus` = {corpus!r} is not of the form `hf:NAME[:CONFIG][@SPLIT]`.")
    return name, config or None, split or "train"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint (``$HF_ENDPOINT``) accepts a TCP connection within `timeout` s.

    Behind a proxy, or in the libraries' offline mode, nothing is probed and True is returned:
    the download itself (or the local cache) decides.
    """
    names = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_HUB_OFFLINE",
             "HF_DATASETS_OFFLINE")  # fmt: skip
    if any(os.environ.get(n) for n in names):
        return True
    url = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def check_hub(corpus: str) -> None:
    """Fail at once, naming the dataset, when an ``hf:`` corpus cannot be downloaded here."""
    name, config, split = hub_source(corpus)
    where = [f"config {config!r}"] * bool(config) + [f"split {split!r}"]
    what = f"dataset {name!r} ({', '.join(where)})"
    need = (
        "a network connection to the Hugging Face Hub (the first time; later, "
        "HF_DATASETS_OFFLINE=1 uses the cached copy)"
    )
    if importlib.util.find_spec("datasets") is None:
        raise ValueError(
            f"`corpus` = {corpus!r}: loading {what} needs the `datasets` package "
            f"(pip install datasets) and {need}."
        )
    if not hub_reachable():
        raise ValueError(
            f"`corpus` = {corpus!r}: the Hugging Face Hub is unreachable; loading {what} "
            f"needs {need}."
        )


def _unloadable(corpus: str, e: Exception) -> ValueError:
    return ValueError(
        f"`corpus` = {corpus!r} could not be loaded (no network and not cached, or no such "
        f"dataset, config or split): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    )


def check_hub_dataset(corpus: str) -> None:
    """Fail, naming the dataset, unless an ``hf:`` corpus's dataset, config and split can be
    loaded here; reads only the dataset's description (cached like the data)."""
    check_hub(corpus)
    import datasets

    name, config, split = hub_source(corpus)
    try:
        splits = datasets.load_dataset_builder(name, config).info.splits
    except (OSError, ValueError) as e:  # offline and not cached, unknown dataset or config
        raise _unloadable(corpus, e) from None
    if splits and split not in splits:
        raise ValueError(f"`corpus` = {corpus!r}: no split {split!r}; splits: {', '.join(splits)}.")


def read_hub(corpus: str, lines: bool = False) -> list[str]:
    """The `text` column of an ``hf:NAME[:CONFIG][@SPLIT]`` dataset (needs `datasets`).

    Texts are stripped and empty ones dropped; with `lines`, every row is kept verbatim.
    """
    check_hub(corpus)
    import datasets

    name, config, split = hub_source(corpus)
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except (OSError, ValueError) as e:  # offline and not cached, unknown dataset/config/split
        raise _unloadable(corpus, e) from None
    if "text" not in ds.column_names:
        raise ValueError(
            f"`corpus` = {corpus!r} has no `text` column; columns: {', '.join(ds.column_names)}."
        )
    if lines:
        return [t or "" for t in ds["text"]]
    return [t.strip() for t in ds["text"] if t and t.strip()]
