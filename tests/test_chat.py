"""Chat generation: streaming equals the whole reply, adapters change it, inputs are checked."""

import pytest
import torch

from qpa.adapters.export import export_adapter
from qpa.adapters.qpa_lora import build_adapter
from qpa.config import AdapterConfig, QPAConfig
from qpa.inference import chat as chat_module
from qpa.inference.chat import ChatModel, context_length, get_chat_model
from qpa.models.loading import load_model

HI = [{"role": "user", "content": "Hi there"}]


@pytest.fixture(scope="module")
def base():
    return ChatModel.load("tiny-llama")


def _greedy_reference(chat: ChatModel, messages, n: int) -> str:
    inputs, _ = chat.encode(messages, n)
    out = chat.model.generate(**inputs, max_new_tokens=n, do_sample=False)
    return chat.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_stream_yields_text_and_reply_is_the_joined_stream(base):
    pieces = list(base.stream(HI, max_new_tokens=8, temperature=0))
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert base.reply(HI, max_new_tokens=8, temperature=0) == "".join(pieces)
    assert "".join(pieces) == _greedy_reference(base, HI, 8)


def test_sampling_is_reproducible_with_a_seed(base):
    a = base.reply(HI, max_new_tokens=8, temperature=1.0, seed=3)
    assert a == base.reply(HI, max_new_tokens=8, temperature=1.0, seed=3)


def test_abandoned_stream_stops_generation(base):
    stream = base.stream(HI, max_new_tokens=2000, temperature=1.0, seed=0)
    next(stream)
    stream.close()  # joins the generation thread; must not hang
    assert base.reply(HI, max_new_tokens=2, temperature=0) is not None


def _random_adapter(tmp_path, method: str):
    model, _ = load_model("tiny-llama")
    peft_model, qpa = build_adapter(
        model,
        AdapterConfig(method=method, rank=2, lora_alpha=16),
        QPAConfig(chunk_size=256, depth=2),
    )
    if qpa is None:  # plain LoRA starts with B = 0: make the update large
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_" in name:
                    p.normal_(0, 2.0)
    return export_adapter(peft_model, qpa, tmp_path / method, base_model="tiny-llama")


@pytest.mark.parametrize("method", ["lora", "qpa-lora"])
def test_adapter_changes_the_reply(tmp_path, base, method):
    adapter = _random_adapter(tmp_path, method)
    tuned = ChatModel.load("tiny-llama", adapter)
    assert type(tuned.model).__name__ == "LlamaForCausalLM"  # merged: a plain model
    logits = [m.model(**m.encode(HI, 1)[0]).logits[0, -1] for m in (base, tuned)]
    assert not torch.allclose(*logits)
    if method == "lora":
        kw = {"max_new_tokens": 12, "temperature": 0}
        assert tuned.reply(HI, **kw) != base.reply(HI, **kw)
        unmerged = ChatModel.load("tiny-llama", adapter, merge=False)
        assert unmerged.reply(HI, **kw) == tuned.reply(HI, **kw)


def test_missing_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="adapter_config.json"):
        ChatModel.load("tiny-llama", tmp_path)


@pytest.mark.parametrize(
    ("messages", "kw", "field"),
    [
        ([], {}, "messages"),
        ("hi", {}, "messages"),
        ([{"role": "robot", "content": "x"}], {}, "messages"),
        ([{"role": "user", "content": None}], {}, "messages"),
        (HI, {"max_new_tokens": 0}, "max_new_tokens"),
        (HI, {"max_new_tokens": 2049}, "max_new_tokens"),
        (HI, {"temperature": -1}, "temperature"),
        (HI, {"top_p": 0}, "top_p"),
        (HI, {"seed": -1}, "seed"),
    ],
)
def test_bad_input_is_rejected(base, messages, kw, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        base.reply(messages, **kw)


def test_prompt_longer_than_context(base):
    limit = context_length(base.model)
    long = [{"role": "user", "content": "x" * (limit + 10)}]  # one byte-level token per char
    with pytest.raises(ValueError, match=rf"`messages` take [\d,]+ tokens.*context is {limit:,}"):
        base.reply(long, max_new_tokens=4)
    near = [{"role": "user", "content": "x" * (limit - 30)}]
    reply = base.reply(near, max_new_tokens=500, temperature=0)
    assert len(reply.encode("utf-8")) <= 30  # the budget is clamped to what the context leaves


def test_get_chat_model_caches_per_model_and_adapter(tmp_path, monkeypatch):
    monkeypatch.setattr(chat_module, "_cache", type(chat_module._cache)())
    a = get_chat_model("tiny-llama")
    assert get_chat_model("tiny-llama") is a
    adapter = _random_adapter(tmp_path, "lora")
    b = get_chat_model("tiny-llama", adapter)
    assert b is not a and get_chat_model("tiny-llama", str(adapter)) is b
    gpt2 = get_chat_model("tiny-gpt2")
    assert len(chat_module._cache) == chat_module.CACHE_SIZE
    assert get_chat_model("tiny-gpt2") is gpt2
    assert get_chat_model("tiny-llama") is not a  # evicted (least recently used)
