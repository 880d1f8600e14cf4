"""Token rows: what the loss is computed on, and the frozen-backbone cache.

A *row* is one predicted position: the hidden state h_t that enters the output head, the target
token x_{t+1}, and whether that target is an assistant (completion) token. Padding targets are
dropped (standard perplexity) or kept (`protocol="paper"`, as the official code counts them).

When only the lm_head is adapted, the backbone is frozen and h_t never changes: `backbone_rows`
computes every row once (no grad) and `cached_rows` keeps them on disk, keyed by model, corpus
and tokenisation; training then runs the head alone on those rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


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

    def select(self, examples: torch.Tensor) -> torch.Tensor:
        """Row indices of the given examples, in order."""
        spans = [torch.arange(self.offsets[i], self.offsets[i + 1]) for i in examples.tolist()]
        return torch.cat(spans) if spans else torch.zeros(0, dtype=torch.long)


def target_mask(attention_mask: torch.Tensor, protocol: str) -> torch.Tensor:
    """(n, T−1) bool: which next-token targets count (all of them under the paper's protocol)."""
    shifted = attention_mask[:, 1:].bool()  # (n, T−1)
    return torch.ones_like(shifted) if protocol == "paper" else shifted


def token_rows(encoded, protocol: str) -> Rows:
    """Targets, assistant flags and per-example offsets, without hidden states."""
    keep = target_mask(encoded.attention_mask, protocol)  # (n, T−1)
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


@torch.no_grad()
def backbone_rows(
    model: nn.Module,
    encoded,
    protocol: str,
    batch_size: int = 16,
    progress: Callable[[float], None] | None = None,
) -> Rows:
    """Rows with their hidden states, computed in length-sorted batches (pads trimmed).

    `progress`, if given, is called with the fraction of examples done after each batch.
    """
    rows = token_rows(encoded, protocol)
    keep = target_mask(encoded.attention_mask, protocol)
    lengths = (
        encoded.attention_mask.sum(1)
        if protocol == "masked"
        else torch.full((len(keep),), keep.shape[1] + 1)
    )
    order = torch.argsort(lengths, descending=True)
    device = next(model.parameters()).device
    parts: list[torch.Tensor | None] = [None] * len(order)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = int(lengths[idx].max())
        ids = encoded.input_ids[idx, :width].to(device)
        mask = encoded.attention_mask[idx, :width].to(device)
        hidden = head_inputs(model, ids, mask)[:, :-1].float().cpu()  # (B, width−1, d)
        for j, i in enumerate(idx.tolist()):
            parts[i] = hidden[j][keep[i, : width - 1]]  # (rows_i, d)
        if progress is not None:
            progress(min(1.0, (start + batch_size) / len(order)))
    rows.hidden = torch.cat(parts) if parts else torch.zeros(0)  # (R, d)
    return rows


def cache_key(model_id: str, model: nn.Module, protocol: str, encoded_split) -> str:
    """Hash of everything the cached rows depend on: model, protocol and the encoded split.

    The split's tensors are hashed rather than the data config, so settings that leave the tokens
    alone (or new config fields at their defaults) keep using the cache.
    """
    def digest(t: torch.Tensor) -> str:
        return hashlib.sha256(t.numpy().tobytes()).hexdigest()

    fingerprint = {
        "model": model_id,
        "config": model.config.to_json_string(use_diff=False) if hasattr(model, "config") else "",
        "protocol": protocol,
        "tokens": digest(encoded_split.input_ids),
        "attention": digest(encoded_split.attention_mask),
        "assistant": digest(encoded_split.assistant_mask),
    }
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:24]


def cached_rows(cache_dir: Path, key: str, compute) -> Rows:
    """Load rows for `key` from `cache_dir`, or compute and store them (atomically)."""
    from safetensors.torch import load_file, save_file

    path = cache_dir / f"rows-{key}.safetensors"
    if path.is_file():
        t = load_file(path)
        return Rows(t["hidden"], t["targets"], t["assistant"].bool(), t["offsets"])
    rows = compute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tensors = {
        "hidden": rows.hidden,
        "targets": rows.targets,
        "assistant": rows.assistant.to(torch.uint8),
        "offsets": rows.offsets,
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)
    log.info("cached %d backbone rows at %s", len(rows.targets), path)
    return rows
