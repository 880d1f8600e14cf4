"""Chat with a base model or with an exported adapter, streaming the reply piece by piece.

`ChatModel.load` loads a base model through `qpa.models.loading.load_model` and, given an adapter folder
(a run's ``adapter/``), merges it in with `qpa.adapters.export.merge_adapter`, so generation runs on a
plain transformers model with no peft or simulator overhead. `get_chat_model` keeps the last few
loaded models, since the app chats with the same one many times.

>>> chat = get_chat_model("tiny-llama")
>>> text = chat.reply([{"role": "user", "content": "Hi"}], max_new_tokens=4, temperature=0)
>>> isinstance(text, str)
True
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from qpa.config import MAX_SEED
from qpa.constants import DEFAULT_MODEL
from qpa.models.loading import load_model
from qpa.tool_config import ChatConfig

ROLES = ("system", "user", "assistant")
DEFAULTS = ChatConfig()
CACHE_SIZE = 2  # loaded models kept by get_chat_model; each SmolLM2 copy is about 0.5 GB


def check_messages(messages: Any) -> list[dict[str, str]]:
    """`messages` as plain {role, content} dicts; ValueError naming `messages` otherwise."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("`messages` must be a non-empty list of {role, content} dicts.")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else m
            raise ValueError(
                f"`messages`[{i}] has role {role!r}; each message needs a role in {', '.join(ROLES)}."
            )
        if not isinstance(m.get("content"), str):
            raise ValueError(
                f"`messages`[{i}] content must be text, got {type(m.get('content')).__name__}."
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def check_generation(
    max_new_tokens: int, temperature: float, top_p: float, seed: int | None
) -> None:
    """ValueError naming the first generation setting out of range (ranges: `ChatConfig`)."""
    ChatConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
    ):
        raise ValueError(f"`seed` = {seed!r} must be a whole number from 0 to {MAX_SEED:,}, or None.")


def context_length(model: torch.nn.Module) -> int | None:
    """The longest sequence the model accepts (prompt + reply), if its config says."""
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class ChatModel:
    """A causal LM and its tokenizer, ready to answer chat messages."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, name: str = "", adapter_dir=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None

    def __repr__(self) -> str:
        return f"ChatModel({self.name!r}, adapter_dir={str(self.adapter_dir) if self.adapter_dir else None!r})"

    @classmethod
    def load(
        cls, model: str = DEFAULT_MODEL, adapter_dir: str | Path | None = None, merge: bool = True
    ) -> ChatModel:
        """`model` with weights; with `adapter_dir`, the adapter merged in (or kept as peft)."""
        base, tokenizer = load_model(model)
        if adapter_dir is not None:
            from qpa.adapters.export import load_adapter, merge_adapter

            with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
                base = (
                    merge_adapter(base, adapter_dir) if merge else load_adapter(base, adapter_dir)
                )
        return cls(base, tokenizer, name=model, adapter_dir=adapter_dir)

    def encode(self, messages: list[dict], max_new_tokens: int) -> tuple[dict, int]:
        """Token ids of the prompt (chat template + generation prompt) and the reply budget."""
        messages = check_messages(messages)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"`model` {self.name!r}: its tokenizer has no chat template.")
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        n_prompt, limit = enc["input_ids"].shape[1], context_length(self.model)
        if limit is not None and n_prompt >= limit:
            raise ValueError(
                f"`messages` take {n_prompt:,} tokens but the model's context is {limit:,}; "
                "shorten or drop earlier messages."
            )
        budget = max_new_tokens if limit is None else min(max_new_tokens, limit - n_prompt)
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in enc.items()}, budget

    def stream(
        self,
        messages: list[dict],
        max_new_tokens: int = DEFAULTS.max_new_tokens,
        temperature: float = DEFAULTS.temperature,
        top_p: float = DEFAULTS.top_p,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Yield the reply in new pieces as they are generated (temperature 0: greedy)."""
        check_generation(max_new_tokens, temperature, top_p, seed)
        inputs, budget = self.encode(messages, max_new_tokens)
        yield from self._generate(inputs, budget, temperature, top_p, seed)

    def _generate(self, inputs, budget, temperature, top_p, seed) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class _Stop(StoppingCriteria):  # lets an abandoned stream end generation early
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        stop, errors = threading.Event(), []
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=budget,
            stopping_criteria=StoppingCriteriaList([_Stop()]),
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            **_sampling(temperature, top_p),
        )

        def work() -> None:
            try:
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as e:  # handed to the consumer below, not swallowed
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=work, name="qpa-chat-generate", daemon=True)
        thread.start()
        try:
            yield from (piece for piece in streamer if piece)
        finally:
            stop.set()
            thread.join()
        if errors:
            raise errors[0]

    def reply(self, messages: list[dict], **kw: Any) -> str:
        """The whole reply as one string (the joined `stream`)."""
        return "".join(self.stream(messages, **kw))


def _sampling(temperature: float, top_p: float) -> dict[str, Any]:
    if temperature == 0 or math.isclose(temperature, 0.0):
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0}


_cache: OrderedDict[tuple, ChatModel] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_key(model: str, adapter_dir: str | Path | None) -> tuple:
    """Model name, adapter folder and its weights' mtime (a re-exported adapter is reloaded)."""
    if adapter_dir is None:
        return (model, None, None)
    path = Path(adapter_dir).expanduser().resolve()
    weights = path / "adapter_model.safetensors"
    return (model, str(path), weights.stat().st_mtime_ns if weights.is_file() else None)


def get_chat_model(model: str = DEFAULT_MODEL, adapter_dir: str | Path | None = None) -> ChatModel:
    """A merged `ChatModel`, reused from a small LRU cache of the last `CACHE_SIZE` loaded."""
    key = _cache_key(model, adapter_dir)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        chat = ChatModel.load(model, adapter_dir)
        _cache[key] = chat
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return chat


def clear_cache() -> None:
    """Forget every cached ChatModel (frees their memory once no one else holds them)."""
    with _cache_lock:
        _cache.clear()
