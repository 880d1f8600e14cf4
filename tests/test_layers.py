"""QPA over many layers and its clean starts: per-layer generators, zero-scale, offset."""

import pytest
import torch
from conftest import tiny_gpt2, tiny_llama
from peft import PeftModel

from qpa.adapters.counts import count_params
from qpa.adapters.export import export_adapter, merge_adapter
from qpa.adapters.qpa_lora import build_adapter
from qpa.config import AdapterConfig, QPAConfig

IDS = torch.tensor([[5, 9, 2, 44, 17, 3]])
MANY = ("q_proj", "v_proj", "lm_head")
STARTS = ("random", "zero-scale", "offset")


def adapter_for(make=tiny_llama, targets=MANY, layers="shared", start="random", **adapter):
    torch.manual_seed(1)
    config = AdapterConfig(target_modules=targets, rank=2, lora_alpha=4, **adapter)
    return build_adapter(
        make(), config, QPAConfig(chunk_size=32, depth=2, layers=layers, start=start)
    )


def base_logits(make=tiny_llama):
    with torch.no_grad():
        return make()(IDS).logits


def one_step(model, qpa) -> list[tuple[str, torch.Tensor]]:
    """One AdamW step on the language-model loss; returns each trainable tensor's gradient."""
    named = qpa.named_trainable()
    optimizer = torch.optim.AdamW([p for _, p in named], lr=1e-2)
    model(IDS, labels=IDS).loss.backward()
    grads = [(n, p.grad.clone()) for n, p in named]
    optimizer.step()
    return grads


@pytest.mark.parametrize("layers", ["shared", "per-layer"])
@pytest.mark.parametrize("start", ["zero-scale", "offset"])
def test_clean_start_equals_the_base_model_then_learns(layers, start):
    model, qpa = adapter_for(layers=layers, start=start)
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, base_logits(), atol=0, rtol=0)
    grads = dict(one_step(model, qpa))
    if start == "zero-scale":
        assert grads["scales"].abs().min() > 0  # every layer's scale moves first
    else:  # offset: full gradients to every generator at once
        assert all(g.abs().sum() > 0 for n, g in grads.items() if n.endswith("mapping.last.weight"))
    with torch.no_grad():
        assert (model(IDS).logits - base_logits()).abs().max() > 1e-4


def test_random_start_is_not_the_base_model():
    model, _ = adapter_for()
    with torch.no_grad():
        assert (model(IDS).logits - base_logits()).abs().max() > 1e-3


@pytest.mark.parametrize(
    "make,targets,layers",
    [
        (tiny_llama, MANY, "shared"),
        (tiny_llama, MANY, "per-layer"),
        (tiny_gpt2, ("c_attn",), "per-layer"),
    ],
)
@pytest.mark.parametrize("start", STARTS)
def test_export_holds_the_effective_weights(tmp_path, make, targets, layers, start):
    model, qpa = adapter_for(make, targets, layers, start)
    one_step(model, qpa)  # scales and offsets away from their start
    with torch.no_grad():
        expected = model(IDS).logits
    export_adapter(model, qpa, tmp_path / "a")
    loaded = PeftModel.from_pretrained(make(), tmp_path / "a")
    torch.testing.assert_close(loaded(IDS).logits, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(merge_adapter(make(), tmp_path / "a")(IDS).logits, expected,
                               atol=1e-5, rtol=0)  # fmt: skip


def test_per_layer_has_one_generator_sized_to_each_layer():
    model, qpa = adapter_for(layers="per-layer")
    layers = [g[0].layer for g in qpa.groups]
    assert len(qpa.generators) == len(layers) == 5  # q, v of two layers and lm_head
    for group, gen in zip(qpa.groups, qpa.generators, strict=True):
        assert {s.layer for s in group} == {group[0].layer}
        assert gen.n_values == sum(s.numel for s in group)
    assert qpa.generators[-1].n_values == 96 * 2 + 2 * 16  # lm_head
    names = [n for n, _ in qpa.named_trainable()]
    assert len(set(names)) == len(names)
    assert "model.layers.0.self_attn.q_proj.circuit.angles" in names
    with pytest.raises(ValueError, match="5 generators"):
        _ = qpa.generator


def test_shared_names_are_the_generators_own():
    """Checkpoints of shared runs keep the names they had before `layers` existed."""
    _, qpa = adapter_for()
    assert [n for n, _ in qpa.named_trainable()] == [n for n, _ in qpa.generator.named_parameters()]


@pytest.mark.parametrize("start", STARTS)
def test_saved_state_restores_the_model_exactly(start):
    """What a checkpoint holds (trainable tensors and start shifts) rebuilds the same model."""
    model, qpa = adapter_for(layers="per-layer", start=start)
    one_step(model, qpa)
    saved = {n: t.detach().clone() for n, t in [*qpa.named_trainable(), *qpa.named_start()]}
    assert any(n.endswith("shift") for n in saved) == (start == "offset")
    torch.manual_seed(7)  # another initialisation, then the saved state on top
    fresh_model, fresh = build_adapter(tiny_llama(), AdapterConfig(target_modules=MANY, rank=2,
                                       lora_alpha=4), qpa.config)  # fmt: skip
    with torch.no_grad():
        for n, t in [*fresh.named_trainable(), *fresh.named_start()]:
            t.copy_(saved[n])
        torch.testing.assert_close(fresh_model(IDS).logits, model(IDS).logits, atol=0, rtol=0)


@pytest.mark.parametrize("layers", ["shared", "per-layer"])
@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("dora", [None, "trainable", "generated"])
def test_counts_equal_the_real_trainable_tensors(layers, start, dora):
    extra = {} if dora is None else {"use_dora": True, "dora_magnitude": dora}
    config = AdapterConfig(target_modules=MANY, rank=2, **extra)
    qpa_config = QPAConfig(chunk_size=32, depth=2, layers=layers, start=start)
    _, qpa = build_adapter(tiny_llama(), config, qpa_config)
    counts = count_params(tiny_llama(), config, qpa_config)
    assert counts.qpa_params == sum(p.numel() for _, p in qpa.named_trainable())
    assert counts.n_values == qpa.n_values and counts.n_generators == len(qpa.generators)
    assert counts.dora == (dora is not None)
    assert counts.scales == (5 + (dora == "generated") * 5 if start == "zero-scale" else 0)
    assert counts.magnitude == (2 * 16 + 2 * 16 + 96 if dora == "trainable" else 0)
    assert counts.lora_params == 2 * (2 * (16 + 16) + 2 * (16 + 16)) + 2 * (96 + 16) + 160 * bool(dora)


def test_per_layer_count_of_a_real_model_is_fast():
    import time

    adapter = AdapterConfig(target_modules=("q_proj", "v_proj"), rank=4)
    qpa = QPAConfig(chunk_size=256, layers="per-layer", hidden_sizes=(16,))
    count_params("smollm2-config", adapter, qpa)  # the layout is cached after this
    start = time.perf_counter()
    for depth in (2, 3, 4, 5):
        c = count_params("smollm2-config", adapter, qpa.replace(depth=depth))
    assert (time.perf_counter() - start) / 4 < 0.5  # 10 ms on a quiet machine; CI may be busy
    assert c.n_generators == 60 and c.n_values == c.lora_params == 30 * (4 * 576 * 2 + 4 * (576 + 192))
