"""QPA-LoRA through peft: generated slices, trainable set, targets, export."""

import pytest
import torch
from conftest import tiny_gpt2, tiny_llama
from peft import PeftModel

from qpa.adapters.export import export_adapter, merge_adapter
from qpa.adapters.qpa_lora import build_adapter, resolve_targets
from qpa.config import AdapterConfig, QPAConfig

QPA = QPAConfig(chunk_size=64, depth=2)
IDS = torch.tensor([[5, 9, 2, 44, 17, 3]])


def _trainable(model, qpa):
    params = [p for p in model.parameters() if p.requires_grad]
    return params + (list(qpa.parameters()) if qpa is not None else [])


def test_lora_weights_are_slices_of_the_generated_vector(llama):
    model, qpa = build_adapter(llama, AdapterConfig(rank=2), QPA)
    with torch.no_grad():
        vector = qpa.generator()
    model(IDS)  # the forward pre-hook writes the generated weights
    layer = model.base_model.model.lm_head
    up, down = layer.lora_B["default"].weight, layer.lora_A["default"].weight
    assert up.shape == (96, 2) and down.shape == (2, 16)
    torch.testing.assert_close(torch.cat([up.reshape(-1), down.reshape(-1)]), vector)
    assert qpa.n_values == 96 * 2 + 2 * 16


def test_only_circuit_and_mapping_train(llama):
    model, qpa = build_adapter(llama, AdapterConfig(rank=2), QPA)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == []
    loss = model(IDS, labels=IDS).loss
    loss.backward()
    assert qpa.generator.circuit.angles.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_weights_regenerate_on_each_forward(llama):
    model, qpa = build_adapter(llama, AdapterConfig(rank=2), QPA)
    before = model(IDS).logits.detach()
    with torch.no_grad():
        qpa.generator.circuit.angles.add_(0.5)
    assert not torch.allclose(model(IDS).logits, before)


def test_many_targets_by_suffix_and_regex(llama):
    assert resolve_targets(llama, ("q_proj",)) == [
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.self_attn.q_proj",
    ]
    assert (
        resolve_targets(llama, (r"model\.layers\.1\..*proj",))[0]
        == "model.layers.1.self_attn.q_proj"
    )
    model, qpa = build_adapter(
        llama, AdapterConfig(target_modules=("q_proj", "v_proj", "lm_head"), rank=2), QPA
    )
    assert len(qpa.slots) == 2 * 5
    assert model(IDS).logits.shape == (1, 6, 96)


def test_gpt2_conv1d_targets(gpt2):
    model, qpa = build_adapter(gpt2, AdapterConfig(target_modules=("c_attn",), rank=2), QPA)
    assert model.base_model.model.transformer.h[0].attn.c_attn.lora_A["default"].weight.shape == (
        2,
        16,
    )
    assert model(IDS).logits.shape == (1, 6, 96)


def test_unknown_target_lists_linear_layers(llama):
    with pytest.raises(
        ValueError,
        match=r"`target_modules` entry 'nope' .* model\.layers\.\*\.self_attn\.q_proj.*lm_head",
    ):
        build_adapter(llama, AdapterConfig(target_modules=("nope",)), QPA)


def test_non_causal_lm_refused():
    from transformers import BertConfig, BertModel

    with pytest.raises(ValueError, match="`model` BertModel is not a causal language model"):
        build_adapter(
            BertModel(
                BertConfig(
                    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
                )
            ),
            AdapterConfig(target_modules=("query",)),
        )


@pytest.mark.parametrize(
    "make,targets",
    [(tiny_llama, ("lm_head",)), (tiny_llama, ("q_proj", "lm_head")), (tiny_gpt2, ("c_attn",))],
)
def test_exported_adapter_reproduces_qpa_logits(tmp_path, make, targets):
    torch.manual_seed(1)
    model, qpa = build_adapter(
        make(), AdapterConfig(target_modules=targets, rank=2, lora_alpha=4), QPA
    )
    with torch.no_grad():
        qpa_logits = model(IDS).logits
    export_adapter(model, qpa, tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    loaded = PeftModel.from_pretrained(make(), tmp_path / "adapter")
    torch.testing.assert_close(loaded(IDS).logits, qpa_logits, atol=1e-5, rtol=0)
    merged = merge_adapter(make(), tmp_path / "adapter")
    assert not isinstance(merged, PeftModel)
    torch.testing.assert_close(merged(IDS).logits, qpa_logits, atol=1e-5, rtol=0)


def test_merge_keeps_tied_embeddings_untouched(tmp_path, llama):
    torch.manual_seed(1)
    model, qpa = build_adapter(tiny_llama(), AdapterConfig(rank=2), QPA)
    export_adapter(model, qpa, tmp_path / "a")
    merged = merge_adapter(llama, tmp_path / "a")
    torch.testing.assert_close(
        merged.get_input_embeddings().weight, tiny_llama().get_input_embeddings().weight
    )


def test_lora_baseline_exports_too(tmp_path, llama):
    torch.manual_seed(1)
    model, qpa = build_adapter(llama, AdapterConfig(method="lora", rank=2), QPA)
    assert qpa is None
    with torch.no_grad():
        model.base_model.model.lm_head.lora_B["default"].weight.normal_()
        expected = model(IDS).logits
    export_adapter(model, None, tmp_path / "lora")
    torch.testing.assert_close(
        PeftModel.from_pretrained(tiny_llama(), tmp_path / "lora")(IDS).logits,
        expected,
        atol=1e-5,
        rtol=0,
    )
