"""Token rows: conversations and texts → token ids and learn-masks → fixed-length tensors.

`tokenize` renders chat conversations with the tokenizer's own chat template (`render_chat`)
and marks the tokens of the assistant replies (each with its end token), the only tokens a chat
fine-tune should learn; for plain text the mask is all ones. `pack` lays the token lists out as
`Encoded` rows of ``max_length``: one row per example (truncated and padded) or full blocks of
the concatenated stream. `qpa.data.splits` uses them to build the train/validation/test splits.

>>> from qpa.config import DataConfig
>>> from qpa.models.tiny_tokenizer import tiny_tokenizer
>>> tok = tiny_tokenizer()
>>> ids, masks = tokenize(["hello", "hi"], tok)
>>> tuple(pack(ids, masks, tok, DataConfig(max_length=8), chat=False).input_ids.shape)
(2, 8)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import torch

from qpa.config import DataConfig
from qpa.data.corpora import Conversation

__all__ = ["Encoded", "pack", "render_chat", "tokenize"]


@dataclass
class Encoded:
    """Token tensors of one split; row i is one example or block."""

    input_ids: torch.Tensor  # (n, T) long
    attention_mask: torch.Tensor  # (n, T) long, 1 on real tokens, 0 on padding
    assistant_mask: torch.Tensor  # (n, T) long, 1 on tokens to learn

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int(self.attention_mask.sum())


def pack(ids: list, masks: list, tokenizer: Any, cfg: DataConfig, chat: bool) -> Encoded:
    """Rows of ``cfg.max_length`` tokens: with packing ``example`` one row per example, filled
    with the pad id; else all tokens end to end in full blocks (plain texts separated by eos)."""
    if cfg.packing == "example":
        return _pack_examples(ids, masks, _pad_id(tokenizer, cfg.pad_with), cfg.max_length, chat)
    return _pack_blocks(ids, masks, tokenizer.eos_token_id, cfg.max_length, chat)


def tokenize(items: list[Conversation] | list[str], tokenizer: Any) -> tuple[list, list]:
    """Token ids and learn-masks (lists of int lists) of conversations or texts, batch-tokenized."""
    if not items or not isinstance(items[0], list):
        enc = tokenizer(list(items), add_special_tokens=True)
        return enc["input_ids"], [[1] * len(x) for x in enc["input_ids"]]
    texts, spans = zip(*(render_chat(conv, tokenizer) for conv in items), strict=True)
    if not getattr(tokenizer, "is_fast", False):
        return _tokenize_slow(texts, spans, tokenizer)
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    masks = [
        _mask_from_offsets(offsets, sp)
        for offsets, sp in zip(enc["offset_mapping"], spans, strict=True)
    ]
    return enc["input_ids"], masks


def _mask_from_offsets(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """1 for each token whose characters overlap an assistant span."""
    ends = [b for _, b in spans]  # spans are sorted and disjoint
    mask = []
    for s, e in offsets:
        k = bisect.bisect_right(ends, s)  # first span ending after the token starts
        mask.append(int(e > s and k < len(spans) and spans[k][0] < e))
    return mask


def _tokenize_slow(texts, spans, tokenizer) -> tuple[list, list]:
    """Without offsets (slow tokenizers): count the tokens of each text prefix at span edges."""
    ids, masks = [], []
    for text, sp in zip(texts, spans, strict=True):
        x = tokenizer(text, add_special_tokens=False)["input_ids"]
        mask = [0] * len(x)
        for a, b in sp:
            lo = len(tokenizer(text[:a], add_special_tokens=False)["input_ids"])
            hi = len(tokenizer(text[:b], add_special_tokens=False)["input_ids"])
            mask[lo:hi] = [1] * (hi - lo)
        ids.append(x)
        masks.append(mask)
    return ids, masks


def render_chat(conv: Conversation, tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """A conversation rendered with the chat template, and the character spans of its replies.

    Each span runs from the end of the generation prompt before an assistant turn to its end
    token, found by rendering the conversation up to that turn, so it holds for any template
    that renders prefixes consistently; otherwise the reply text is searched for.

    >>> from qpa.models.tiny_tokenizer import tiny_tokenizer
    >>> text, spans = render_chat([{"role": "user", "content": "Hi"},
    ...                            {"role": "assistant", "content": "Yo"}], tiny_tokenizer())
    >>> [text[a:b] for a, b in spans]
    ['Yo<|im_end|>']
    """
    render = tokenizer.apply_chat_template
    text = render(conv, tokenize=False)
    spans, cursor = [], 0
    for i, m in enumerate(conv):
        if m["role"] != "assistant":
            continue
        prompt = render(conv[:i], tokenize=False, add_generation_prompt=True) if i else None
        done = render(conv[: i + 1], tokenize=False).rstrip()
        if prompt and len(prompt) >= cursor and text.startswith(done) and done.startswith(prompt):
            span = (len(prompt), len(done))
        else:  # a template that rewrites earlier turns: find the reply text itself
            at = text.find(m["content"], cursor)
            if at < 0:
                continue
            end = at + len(m["content"])
            eos = tokenizer.eos_token or ""
            span = (at, end + len(eos) if eos and text.startswith(eos, end) else end)
        spans.append(span)
        cursor = span[1]
    return text, spans


def _pack_examples(ids, masks, pad: int, T: int, chat: bool) -> Encoded:
    """One row per example: truncated to T tokens, right-padded with `pad`."""
    n = len(ids)
    input_ids = torch.full((n, T), pad, dtype=torch.long)  # (n, T)
    attention = torch.zeros((n, T), dtype=torch.long)  # (n, T)
    learn = torch.zeros((n, T), dtype=torch.long)  # (n, T)
    for i, (x, m) in enumerate(zip(ids, masks, strict=True)):
        L = min(len(x), T)
        input_ids[i, :L] = torch.tensor(x[:L], dtype=torch.long)
        attention[i, :L] = 1
        learn[i, :L] = torch.tensor(m[:L], dtype=torch.long)
    return Encoded(input_ids, attention, learn)


def _pack_blocks(ids, masks, eos: int | None, T: int, chat: bool) -> Encoded:
    """All tokens concatenated and cut into full blocks of T (the remainder is dropped).

    Plain texts are separated by eos; chat texts are already delimited by their template.
    """
    sep = [] if chat or eos is None else [eos]
    stream, learn = [], []
    for x, m in zip(ids, masks, strict=True):
        stream += [*x, *sep]
        learn += [*m, *[1] * len(sep)]
    n = len(stream) // T
    input_ids = torch.tensor(stream[: n * T], dtype=torch.long).view(n, T)  # (n, T)
    assistant = torch.tensor(learn[: n * T], dtype=torch.long).view(n, T)  # (n, T)
    return Encoded(input_ids, torch.ones_like(input_ids), assistant)


def _pad_id(tokenizer: Any, pad_with: str) -> int:
    """The id that fills padded positions: the pad token (else eos, else 0), or eos."""
    ids = (tokenizer.pad_token_id, tokenizer.eos_token_id)
    if pad_with == "eos":
        ids = ids[::-1]
    return next((i for i in ids if i is not None), 0)
