"""Corpora → tokenized train/validation tensors: the embedded chat corpus, uploads, Hub datasets.

`load_conversations` reads a `DataConfig`'s corpus (see `qpa.data.corpora` for the formats);
`build_splits` shuffles it by ``split_seed``, holds out ``val_fraction`` (and ``test_fraction``,
a test split) and turns the parts into `Encoded` rows with `qpa.data.encoding` (chat rendered
with the tokenizer's template, ``assistant_mask`` marking the replies to learn).

>>> from qpa.config import DataConfig
>>> from qpa.models.tiny_tokenizer import tiny_tokenizer
>>> splits = build_splits(DataConfig(topics=("ai",), max_length=64), tiny_tokenizer())
>>> len(splits.train), len(splits.val), tuple(splits.train.input_ids.shape)
(95, 10, (95, 64))
"""

from __future__ import annotations

import logging
import pathlib
from dataclasses import dataclass
from typing import Any

import torch

from qpa.config import DataConfig
from qpa.data.changelog import CHANGELOG_CORPUS, read_changelog
from qpa.data.corpora import (
    PARSERS,
    Conversation,
    chatterbot_topics,
    check_hub_dataset,
    parse_lines,
    read_chatterbot,
    read_hub,
)
from qpa.data.encoding import Encoded, pack, tokenize
from qpa.safe_io import read_regular

__all__ = [
    "MAX_UPLOAD_BYTES",
    "Splits",
    "build_splits",
    "chatterbot_topics",
    "check_corpus",
    "check_upload",
    "load_conversations",
    "preview",
]

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # uploads larger than this are refused


@dataclass
class Splits:
    """Train, validation (and test) tensors and what went into them."""

    train: Encoded
    val: Encoded
    chat: bool  # conversations (assistant_mask marks replies) or plain texts
    n_examples: int  # conversations or texts used, after `max_examples`
    n_tokens: int  # their tokens before truncation, padding or blocking
    n_truncated: int  # examples cut at `max_length` (example packing)
    test: Encoded | None = None  # held out for the end of training only (`test_fraction`)

    def summary(self) -> str:
        kind = "conversations" if self.chat else "texts"
        test = f" / {len(self.test):,} test" if self.test is not None else ""
        return (
            f"{self.n_examples:,} {kind}, {self.n_tokens:,} tokens → {len(self.train):,} train / "
            f"{len(self.val):,} val{test} rows of {self.train.input_ids.shape[1]} tokens"
            f" ({self.n_truncated:,} truncated)"
        )


def load_conversations(cfg: DataConfig) -> list[Conversation] | list[str]:
    """The corpus of `cfg`: a list of conversations (chat) or a list of plain texts."""
    corpus = cfg.corpus.strip()
    if cfg.topics and corpus != "chatterbot":
        logger.warning("`topics` apply to the chatterbot corpus only; ignored for %r.", corpus)
    lines = cfg.text_unit == "line"
    if corpus == "chatterbot":
        items = read_chatterbot(cfg.topics)
    elif corpus == CHANGELOG_CORPUS:
        items = list(read_changelog())
    elif corpus.startswith("hf:"):
        items = read_hub(corpus, lines=lines)
    else:
        items = _read_file(pathlib.Path(corpus).expanduser(), lines=lines)
    texts = [x for x in items if (x if isinstance(x, list) else x.strip())]
    if not texts:
        raise ValueError(f"`corpus` = {cfg.corpus!r} holds no text.")
    return items if lines else texts


def check_upload(path: str | pathlib.Path) -> None:
    """Raise ValueError saying why `path` is not a usable corpus file; return None if it is."""
    _file_is_chat(pathlib.Path(path))


def _file_is_chat(path: pathlib.Path) -> bool:
    """Whether the corpus file `path` holds conversations (else plain texts); ValueError
    saying why it is no usable corpus."""
    items = _read_file(path)
    if not items:
        raise ValueError(f"`corpus` = {path.name!r} holds no text.")
    return isinstance(items[0], list)


def check_corpus(cfg: DataConfig) -> None:
    """Every data setting of `cfg` that can fail, checked before a run folder exists: the
    corpus (its topics, its file, its Hub dataset) and the eval corpus, and that both hold the
    same kind of data. Nothing is tokenized and no Hub data is downloaded."""
    chat = _is_chat(cfg.corpus.strip(), cfg.topics)
    if cfg.eval_corpus:
        try:
            held = _is_chat(cfg.eval_corpus.strip(), ())
        except ValueError as e:
            raise ValueError(f"`eval_corpus`: {e}") from None
        _check_kinds(cfg, held, chat)


def _is_chat(corpus: str, topics: tuple[str, ...]) -> bool:
    if corpus == "chatterbot":
        return bool(read_chatterbot(topics))
    if corpus == CHANGELOG_CORPUS:
        return not read_changelog()  # plain texts (raises without gradio)
    if corpus.startswith("hf:"):
        check_hub_dataset(corpus)
        return False
    return _file_is_chat(pathlib.Path(corpus).expanduser())


def _check_kinds(cfg: DataConfig, held_chat: bool, chat: bool) -> None:
    if held_chat != chat:
        kinds = ("plain texts", "conversations")
        raise ValueError(
            f"`eval_corpus` = {cfg.eval_corpus!r} holds {kinds[held_chat]} but `corpus` = "
            f"{cfg.corpus!r} holds {kinds[chat]}; validate on the same kind of data."
        )


def _read_file(path: pathlib.Path, lines: bool = False) -> list[Conversation] | list[str]:
    """The corpus in `path`; with `lines`, a .txt/.md file gives one text per line."""
    name = path.name
    if not path.is_file():
        raise ValueError(
            f"`corpus` = {str(path)!r} is not `chatterbot`, `{CHANGELOG_CORPUS}`, "
            "`hf:NAME[:CONFIG]` or an existing file."
        )
    ext = path.suffix.lower()
    if ext not in PARSERS:
        raise ValueError(
            f"`corpus` = {name!r}: unknown file type {ext or '(none)'!r}; "
            f"use one of {', '.join(PARSERS)}."
        )
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(
            f"`corpus` = {name!r} is too large: {size:,} bytes, the limit is {MAX_UPLOAD_BYTES:,}."
        )
    data = read_regular(path, MAX_UPLOAD_BYTES, "corpus")
    if b"\0" in data:
        raise ValueError(f"`corpus` = {name!r} looks binary (it contains NUL bytes), not text.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"`corpus` = {name!r} is not UTF-8 text (invalid byte at offset {e.start})."
        ) from None
    if not text.strip():
        raise ValueError(f"`corpus` = {name!r} is empty.")
    if lines and ext in (".txt", ".md"):
        return parse_lines(text)
    return PARSERS[ext](text, name)


def _split_order(n: int, cfg: DataConfig) -> tuple[list[int], int, int]:
    """Shuffled indices (capped at `max_examples`), how many of the first are validation and how
    many of the next are test: the validation split does not depend on `test_fraction`."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed)).tolist()
    if cfg.max_examples:
        order = order[: cfg.max_examples]
    n_val = 0 if cfg.eval_corpus else max(1, round(cfg.val_fraction * len(order)))
    n_test = max(1, round(cfg.test_fraction * len(order))) if cfg.test_fraction else 0
    if len(order) - n_val - n_test < 1:
        what = f"`topics` = {','.join(cfg.topics)!r}" if cfg.topics else f"`corpus` = {cfg.corpus!r}"
        field = f"`test_fraction` = {cfg.test_fraction:g}" if n_test else f"{what} is too small"
        raise ValueError(
            f"{field}: {len(order)} example(s) leave none for training after holding out "
            f"{n_val} for validation"
            + (f" and {n_test} for test." if n_test else "; choose more topics or a bigger corpus.")
        )
    return order, n_val, n_test


def split_sizes(cfg: DataConfig) -> tuple[int, int, int] | None:
    """(training, validation, test) examples of `cfg`, counted without tokenizing; a split left
    empty raises. None when only tokenizing can count them (block packing) or the corpus is a
    Hub dataset (not read here).

    >>> split_sizes(DataConfig(topics=("ai",), test_fraction=0.2))
    (74, 10, 21)
    """
    if cfg.corpus.startswith("hf:"):
        return None
    items = load_conversations(cfg)
    order, n_val, n_test = _split_order(len(items), cfg)
    if cfg.packing != "example" or cfg.eval_corpus.startswith("hf:"):
        return None
    if cfg.eval_corpus:
        held = len(load_eval_corpus(cfg, isinstance(items[0], list)))
        return len(order) - n_test, held, n_test
    return len(order) - n_val - n_test, n_val, n_test


def build_splits(cfg: DataConfig, tokenizer: Any) -> Splits:
    """Tokenized, deterministic train/validation(/test) splits of the corpus of `cfg`."""
    items = load_conversations(cfg)
    order, n_val, n_test = _split_order(len(items), cfg)
    items = [items[i] for i in order]
    chat = isinstance(items[0], list)
    if cfg.eval_corpus:
        held = load_eval_corpus(cfg, chat)
        items, n_val = held + items, len(held)
    ids, masks = tokenize(items, tokenizer)
    parts = {}
    for part, rows in (("validation", slice(0, n_val)), ("test", slice(n_val, n_val + n_test)),
                       ("training", slice(n_val + n_test, None))):  # fmt: skip
        if part == "test" and not n_test:
            continue
        parts[part] = pack(ids[rows], masks[rows], tokenizer, cfg, chat)
        _check_split(parts[part], part, cfg, sum(len(x) for x in ids[rows]))
    n_truncated = sum(len(x) > cfg.max_length for x in ids) if cfg.packing == "example" else 0
    return Splits(
        train=parts["training"],
        val=parts["validation"],
        chat=chat,
        n_examples=len(items),
        n_tokens=sum(len(x) for x in ids),
        n_truncated=n_truncated,
        test=parts.get("test"),
    )


def load_eval_corpus(cfg: DataConfig, chat: bool) -> list[Conversation] | list[str]:
    """The examples of `cfg.eval_corpus`, whole and in order, of the same kind as the corpus."""
    try:
        held = load_conversations(cfg.replace(corpus=cfg.eval_corpus, eval_corpus=""))
    except ValueError as e:
        raise ValueError(f"`eval_corpus`: {e}") from None
    _check_kinds(cfg, isinstance(held[0], list), chat)
    return held


def _check_split(enc: Encoded, part: str, cfg: DataConfig, n_tokens: int) -> None:
    if len(enc) == 0:
        raise ValueError(
            f"`max_length` = {cfg.max_length}: the {part} split has only {n_tokens} tokens, "
            f"not one block; lower `max_length`, use packing `example` or a bigger `corpus`."
        )
    if enc.assistant_mask.sum() == 0:
        raise ValueError(
            f"`max_length` = {cfg.max_length}: no assistant reply token fits in the {part} "
            "examples (the prompts fill them); raise `max_length`."
        )


def preview(cfg: DataConfig, tokenizer: Any, n: int = 3) -> list[str]:
    """The first `n` examples in split order, as the model will read them (chat template applied).

    >>> from qpa.models.tiny_tokenizer import tiny_tokenizer
    >>> print(preview(DataConfig(topics=("greetings",)), tiny_tokenizer(), n=1)[0])
    <|im_start|>user
    Top of the morning to you!<|im_end|>
    <|im_start|>assistant
    And the rest of the day to you.<|im_end|>
    <BLANKLINE>
    """
    items = load_conversations(cfg)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(cfg.split_seed))
    chosen = [items[i] for i in order[:n].tolist()]
    if chosen and isinstance(chosen[0], list):
        return [tokenizer.apply_chat_template(c, tokenize=False) for c in chosen]
    return chosen
