"""Token rows: what the loss is computed on, and the frozen-backbone cache.

A *row* is one predicted position: the hidden state h_t that enters the output head, the target
token x_{t+1}, and whether that target is an assistant (completion) token. Padding targets are
dropped (standard perplexity) or kept (`perplexity="paper"`, as the official code counts them).

When only the lm_head is adapted, the backbone is frozen and h_t never changes: every row is
computed once (no grad) and kept on disk, keyed by model, corpus and tokenisation
(`cache_key`); training then runs the head alone on those rows. `example_rows` computes the rows
of any examples in length buckets, reusing the key/value cache of the prefix they all share
(`run_prefix`); `qpa.training.row_stream` calls it when a batch first needs them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass
class Rows:
    """Rows of a split, grouped by example: example i owns rows offsets[i]:offsets[i+1]."""

    hidden: torch.Tensor | None  # (R, d) cached head inputs, or None when not cached
    targets: torch.Tensor  # (R,) next-token ids
    assistant: torch.Tensor  # (R,) bool, target is an assistant token
    offsets: torch.Tensor  # (n_examples + 1,)

    @property
    def n_examples(self) -> int:
        return len(self.offsets) - 1

    def select(self, examples: torch.Tensor, skip: int = 0) -> torch.Tensor:
        """Row indices of the given examples, in order, less the first `skip` of each."""
        spans = [
            torch.arange(self.offsets[i] + skip, self.offsets[i + 1]) for i in examples.tolist()
        ]
        return torch.cat(spans) if spans else torch.zeros(0, dtype=torch.long)

    def kept(self, examples: torch.Tensor, skip: int) -> torch.Tensor:
        """(rows of `examples`,) bool: which of ``select(examples)`` ``select(examples, skip)``
        keeps."""
        counts = (self.offsets[examples + 1] - self.offsets[examples]).tolist()
        spans = [torch.arange(n) >= skip for n in counts]
        return torch.cat(spans) if spans else torch.zeros(0, dtype=torch.bool)


def target_mask(attention_mask: torch.Tensor, perplexity: str) -> torch.Tensor:
    """(n, T−1) bool: which next-token targets count (all of them under the paper's protocol)."""
    shifted = attention_mask[:, 1:].bool()  # (n, T−1)
    return torch.ones_like(shifted) if perplexity == "paper" else shifted


def token_rows(encoded, perplexity: str) -> Rows:
    """Targets, assistant flags and per-example offsets, without hidden states."""
    keep = target_mask(encoded.attention_mask, perplexity)  # (n, T−1)
    counts = keep.sum(dim=1)
    offsets = torch.zeros(len(counts) + 1, dtype=torch.long)
    offsets[1:] = counts.cumsum(0)
    return Rows(
        hidden=None,
        targets=encoded.input_ids[:, 1:][keep],  # (R,)
        assistant=encoded.assistant_mask[:, 1:].bool()[keep],  # (R,)
        offsets=offsets,
    )


def head_inputs(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """What enters `model`'s output head, (B, T, d), without computing the logits."""
    backbone = model.base_model  # e.g. LlamaModel, GPT2Model: ends with the final norm
    if backbone is not model:
        return backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    captured = []
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda _m, args: captured.append(args[0])
    )
    try:
        model(input_ids=input_ids, attention_mask=attention_mask)
    finally:
        hook.remove()
    return captured[0]


TOKENS_PER_BATCH = 1024  # padded tokens per backbone forward (see tests/bench/bench_first_run.py)


@dataclass
class Prefix:
    """The tokens every example starts with (a chat template's system prompt), run once."""

    ids: torch.Tensor  # (P,) the shared tokens
    hidden: torch.Tensor  # (P, d) their head inputs
    cache: object  # the backbone's key/value cache of those P tokens, batch 1

    @property
    def length(self) -> int:
        return len(self.ids)


def row_widths(encoded, perplexity: str) -> torch.Tensor:
    """(n,) tokens each example runs through the backbone: its real tokens, or all under `paper`."""
    mask = encoded.attention_mask
    return mask.sum(1) if perplexity == "masked" else torch.full((len(mask),), mask.shape[1])


def shared_prefix(encoded, perplexity: str) -> int:
    """Length of the real-token prefix all examples share, leaving each at least one own token.

    >>> from types import SimpleNamespace as E
    >>> ids = torch.tensor([[5, 6, 7, 8], [5, 6, 9, 0]])
    >>> shared_prefix(E(input_ids=ids, attention_mask=torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])), "masked")
    2
    """
    ids, mask = encoded.input_ids, encoded.attention_mask.bool()
    if len(ids) < 2:
        return 0
    same = (ids == ids[0]).all(0) & mask.all(0)  # (T,)
    length = int(same.long().cumprod(0).sum())
    return max(0, min(length, int(row_widths(encoded, perplexity).min()) - 1))


def alike_rows(encoded, rows: Rows, perplexity: str) -> int:
    """How many leading rows all examples have alike: inside their shared prefix, each row's
    hidden state, target and assistant flag, hence its loss, are the same in every example
    (causal attention). An evaluation computes them once (`qpa.training.loop.evaluate_split`).

    >>> from types import SimpleNamespace as E
    >>> ids = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 0]])
    >>> enc = E(input_ids=ids, attention_mask=(ids > 0).long(), assistant_mask=torch.zeros_like(ids))
    >>> alike_rows(enc, token_rows(enc, "masked"), "masked")
    1
    """
    alike = max(0, shared_prefix(encoded, perplexity) - 1)  # the last one predicts an own token
    if alike == 0:
        return 0
    flags = rows.assistant[rows.offsets[:-1, None] + torch.arange(alike)]  # (n, alike)
    return alike if bool((flags == flags[0]).all()) else 0


@torch.no_grad()
def run_prefix(model: nn.Module, encoded, perplexity: str) -> Prefix | None:
    """The shared prefix's head inputs and key/value cache, or None when there is none to reuse."""
    backbone = model.base_model
    length = shared_prefix(encoded, perplexity)
    if backbone is model or length == 0:
        return None
    device = next(model.parameters()).device
    ids = encoded.input_ids[0, :length]
    out = backbone(input_ids=ids[None].to(device), use_cache=True)
    return Prefix(ids, out.last_hidden_state[0], out.cache)


def length_buckets(widths: torch.Tensor, budget: int = TOKENS_PER_BATCH) -> list[torch.Tensor]:
    """Positions into `widths`, longest first, in batches of at most `budget` padded tokens.

    >>> [b.tolist() for b in length_buckets(torch.tensor([3, 9, 4, 8]), budget=16)]
    [[1], [3, 2], [0]]
    """
    order = torch.argsort(widths, descending=True, stable=True).tolist()
    batches, start = [], 0
    while start < len(order):
        size = max(1, budget // max(1, int(widths[order[start]])))
        batches.append(torch.tensor(order[start : start + size]))
        start += size
    return batches


def batch_hidden(
    model: nn.Module, encoded, idx: torch.Tensor, width: int, prefix: Prefix | None = None
) -> torch.Tensor:
    """Head inputs (B, width − 1, d) of examples `idx`, cut at `width`; with a `prefix`, only the
    positions after it run through the backbone, on a copy of its key/value cache."""
    device = next(model.parameters()).device
    ids = encoded.input_ids[idx, :width].to(device)
    mask = encoded.attention_mask[idx, :width].to(device)
    if prefix is None:
        hidden = head_inputs(model, ids, mask)  # (B, width, d)
    else:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(len(idx))
        tail = model.base_model(
            input_ids=ids[:, prefix.length :], attention_mask=mask, cache=cache, use_cache=True
        ).last_hidden_state  # (B, width − P, d)
        shared = prefix.hidden.expand(len(idx), -1, -1)  # (B, P, d)
        hidden = torch.cat([shared, tail], dim=1)  # (B, width, d)
    return hidden[:, :-1].float().cpu()


@torch.no_grad()
def example_rows(
    model: nn.Module,
    encoded,
    examples: torch.Tensor,
    perplexity: str,
    prefix: Prefix | None = None,
    budget: int = TOKENS_PER_BATCH,
) -> torch.Tensor:
    """Hidden rows (R, d) of `examples`, in `Rows.select` order: length-bucketed batches of at
    most `budget` padded tokens, pads trimmed, the shared `prefix` (see `run_prefix`) reused."""
    keep = target_mask(encoded.attention_mask[examples], perplexity)  # (k, T−1)
    widths = row_widths(encoded, perplexity)[examples]
    skip = prefix.length if prefix is not None else 0
    parts: list[torch.Tensor | None] = [None] * len(examples)
    for batch in length_buckets(widths - skip, budget):
        width = int(widths[batch].max())
        hidden = batch_hidden(model, encoded, examples[batch], width, prefix)  # (B, width−1, d)
        for j, b in enumerate(batch.tolist()):
            parts[b] = hidden[j][keep[b, : width - 1]]  # (rows_b, d)
    return torch.cat(parts) if parts else torch.zeros(0)


@torch.no_grad()
def backbone_rows(
    model: nn.Module,
    encoded,
    perplexity: str,
    batch_size: int = 16,
    progress: Callable[[float], None] | None = None,
) -> Rows:
    """All rows at once, the straightforward way: length-sorted batches of `batch_size`, no
    prefix reuse. The reference the streamed cache (`qpa.training.row_stream`) is tested and
    benchmarked against; `progress` hears the fraction of examples done after each batch.
    """
    rows = token_rows(encoded, perplexity)
    keep = target_mask(encoded.attention_mask, perplexity)
    widths = row_widths(encoded, perplexity)
    order = torch.argsort(widths, descending=True)
    parts: list[torch.Tensor | None] = [None] * len(order)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = int(widths[idx].max())
        hidden = batch_hidden(model, encoded, idx, width)  # (B, width−1, d)
        for j, i in enumerate(idx.tolist()):
            parts[i] = hidden[j][keep[i, : width - 1]]  # (rows_i, d)
        if progress is not None:
            progress(min(1.0, (start + batch_size) / len(order)))
    rows.hidden = torch.cat(parts) if parts else torch.zeros(0)  # (R, d)
    return rows


def cache_key(model_id: str, model: nn.Module, perplexity: str, encoded_split) -> str:
    """Hash of everything the cached rows depend on: model, protocol and the encoded split.

    The split's tensors are hashed rather than the data config, so settings that leave the tokens
    alone (or new config fields at their defaults) keep using the cache.
    """
    def digest(t: torch.Tensor) -> str:
        return hashlib.sha256(t.numpy().tobytes()).hexdigest()

    fingerprint = {
        "model": model_id,
        "config": model.config.to_json_string(use_diff=False) if hasattr(model, "config") else "",
        "protocol": perplexity,
        "tokens": digest(encoded_split.input_ids),
        "attention": digest(encoded_split.attention_mask),
        "assistant": digest(encoded_split.assistant_mask),
    }
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:24]


def save_rows(path: Path, rows: Rows) -> None:
    """Store finished rows as one safetensors file, atomically (temp file + rename)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tensors = {
        "hidden": rows.hidden,
        "targets": rows.targets,
        "assistant": rows.assistant.to(torch.uint8),
        "offsets": rows.offsets,
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)
