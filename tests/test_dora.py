"""DoRA: the peft baseline and QPA-DoRA (magnitude trainable or generated), export and the head."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_gpt2, tiny_llama
from peft import PeftModel
from test_train import tiny

from qpa.adapters.export import export_adapter, merge_adapter
from qpa.adapters.head_loss import head_nll, head_parts
from qpa.adapters.qpa_lora import build_adapter
from qpa.config import AdapterConfig, QPAConfig
from qpa.training.loop import validate_config
from qpa.training.session import output_head, prepare, split_loss

IDS = torch.tensor([[5, 9, 2, 44, 17, 3]])


def dora(make=tiny_llama, targets=("q_proj", "lm_head"), method="qpa-lora", magnitude="trainable",
         start="random"):  # fmt: skip
    torch.manual_seed(1)
    adapter = AdapterConfig(method=method, target_modules=targets, rank=2, lora_alpha=4,
                            use_dora=True, dora_magnitude=magnitude)  # fmt: skip
    return build_adapter(make(), adapter, QPAConfig(chunk_size=32, depth=2, start=start))


def trainable(model, qpa):
    if qpa is not None:
        return qpa.named_trainable()
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def step(model, qpa) -> None:
    """One AdamW step, so magnitudes and LoRA matrices leave their initial values."""
    optimizer = torch.optim.AdamW([p for _, p in trainable(model, qpa)], lr=3e-2)
    model(IDS, labels=IDS).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_trainable_magnitude_is_peft_s_vector_next_to_the_generator():
    model, qpa = dora()
    names = [n for n, _ in qpa.named_trainable()]
    assert [n for n in names if n.endswith("magnitude")] == [
        "model.layers.0.self_attn.q_proj.magnitude",
        "model.layers.1.self_attn.q_proj.magnitude",
        "lm_head.magnitude",
    ]
    magnitude = dict(qpa.named_trainable())["lm_head.magnitude"]
    head = model.base_model.model.lm_head
    assert magnitude is head.lora_magnitude_vector["default"].weight and magnitude.requires_grad
    torch.testing.assert_close(magnitude, head.base_layer.weight.norm(dim=1))  # starts at ‖W‖
    model(IDS, labels=IDS).loss.backward()
    assert magnitude.grad.abs().sum() > 0


def test_generated_magnitude_starts_at_the_row_norms():
    model, qpa = dora(magnitude="generated", start="offset")
    assert not any(n.endswith("magnitude") for n, _ in qpa.named_trainable())
    head = model.base_model.model.lm_head
    assert "weight" not in head.lora_magnitude_vector["default"]._parameters
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, tiny_llama()(IDS).logits, atol=1e-6, rtol=0)
        expected = head.base_layer.weight.norm(dim=1)
        torch.testing.assert_close(head.lora_magnitude_vector["default"].weight, expected)
    step(model, qpa)
    model(IDS)
    assert (head.lora_magnitude_vector["default"].weight - expected).abs().max() > 1e-4


@pytest.mark.parametrize(
    "make,targets,method,magnitude",
    [
        (tiny_llama, ("q_proj", "lm_head"), "lora", "trainable"),
        (tiny_llama, ("q_proj", "lm_head"), "qpa-lora", "trainable"),
        (tiny_llama, ("q_proj", "lm_head"), "qpa-lora", "generated"),
        (tiny_gpt2, ("c_attn",), "qpa-lora", "generated"),
    ],
)
def test_export_is_a_standard_dora_adapter(tmp_path, make, targets, method, magnitude):
    model, qpa = dora(make, targets, method, magnitude)
    step(model, qpa)
    with torch.no_grad():
        expected = model(IDS).logits
    export_adapter(model, qpa, tmp_path / "a")
    loaded = PeftModel.from_pretrained(make(), tmp_path / "a")
    assert loaded.peft_config["default"].use_dora
    torch.testing.assert_close(loaded(IDS).logits, expected, atol=1e-5, rtol=0)
    merged = merge_adapter(make(), tmp_path / "a")
    torch.testing.assert_close(merged(IDS).logits, expected, atol=1e-5, rtol=0)
    if make is tiny_llama:  # the tied head was untied before merging: embeddings untouched
        torch.testing.assert_close(
            merged.get_input_embeddings().weight, make().get_input_embeddings().weight
        )


@pytest.mark.parametrize("weights", ["uniform", "per-row"])
def test_fused_head_loss_with_a_dora_factor_equals_the_plain_loss(weights):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 8, generator=g, requires_grad=True)
    weight, bias = torch.randn(50, 8, generator=g), torch.randn(50, generator=g)
    a = torch.randn(3, 8, generator=g, requires_grad=True)
    b = torch.randn(50, 3, generator=g, requires_grad=True)
    factor = (torch.rand(50, generator=g) + 0.5).requires_grad_()
    targets = torch.randint(0, 50, (37,), generator=g)
    row_weights = torch.rand(37, generator=g) if weights == "per-row" else torch.ones(37)
    grads = []
    for fused in (True, False):
        if fused:
            nll = head_nll(hidden, weight, targets, a, b, 0.5, bias, chunk_rows=10, dora=factor)
        else:
            logits = factor * (hidden @ weight.T + 0.5 * (hidden @ a.T) @ b.T) + bias
            nll = F.cross_entropy(logits, targets, reduction="none")
        (nll * row_weights).sum().backward()
        grads.append([nll.detach()] + [t.grad.clone() for t in (hidden, a, b, factor)])
        for t in (hidden, a, b, factor):
            t.grad = None
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "method,magnitude",
    [("lora", "trainable"), ("qpa-lora", "trainable"), ("qpa-lora", "generated")],
)
def test_head_parts_of_a_dora_head_match_peft(method, magnitude):
    model, qpa = dora(targets=("lm_head",), method=method, magnitude=magnitude)
    step(model, qpa)  # B and the magnitude away from their start
    head = output_head(model)
    hidden = torch.randn(40, 16, generator=torch.Generator().manual_seed(2))
    targets = torch.randint(0, 96, (40,), generator=torch.Generator().manual_seed(3))
    grads = []
    for fused in (True, False):
        if qpa is not None:
            qpa.materialize()
        parts = head_parts(head)
        if fused:
            p = (parts.lora_a, parts.lora_b, parts.scaling)
            nll = head_nll(hidden, parts.weight, targets, *p, dora=parts.dora)
        else:
            nll = F.cross_entropy(head(hidden), targets, reduction="none")
        nll.mean().backward()
        named = trainable(model, qpa)
        grads.append([nll.detach()] + [t.grad.clone() for _, t in named])
        for _, t in named:
            t.grad = None
    assert all(g.abs().sum() > 0 for g in grads[0][1:])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.chatterbot
@pytest.mark.parametrize("method", ["qpa-lora", "lora"])
def test_cached_dora_head_equals_full_forward(method):
    config = tiny(method)
    config = config.replace(adapter=config.adapter.replace(use_dora=True))
    cached = prepare(config)
    full = prepare(config.replace(train=config.train.replace(cache_backbone=False)))
    assert cached.head_only and not full.head_only
    with torch.no_grad():  # one adapter in both; non-zero B and magnitude so that they matter
        for (_, a), (_, b) in zip(cached.trainable(), full.trainable(), strict=True):
            if method == "lora":
                a.add_(torch.randn_like(a) * 0.1)
            b.copy_(a)
    examples = torch.tensor([3, 0, 7, 11])
    nll_c, _ = split_loss(cached, "train", examples)
    nll_f, _ = split_loss(full, "train", examples)
    torch.testing.assert_close(nll_c, nll_f, atol=1e-5, rtol=0)
    nll_c.mean().backward()
    nll_f.mean().backward()
    for (name, a), (_, b) in zip(cached.trainable(), full.trainable(), strict=True):
        assert a.grad.abs().sum() > 0, name
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method,magnitude", [("lora", "trainable"), ("qpa-lora", "generated")])
def test_differentiated_norm_gives_the_full_dora_gradient(method, magnitude):
    """`dora_norm="differentiated"`: the fused head's gradients equal autograd through
    m ⊙ (W + s·B·A) / ‖W + s·B·A‖ with the norm kept in the graph, and differ from peft's."""
    model, qpa = dora(targets=("lm_head",), method=method, magnitude=magnitude)
    step(model, qpa)
    head = output_head(model)
    hidden = torch.randn(40, 16, generator=torch.Generator().manual_seed(2))
    targets = torch.randint(0, 96, (40,), generator=torch.Generator().manual_seed(3))

    def grads(loss_of_parts, dora_norm):
        if qpa is not None:
            qpa.materialize()
        loss_of_parts(head_parts(head, dora_norm)).backward()
        named = trainable(model, qpa)
        out = [t.grad.clone() for _, t in named]
        for _, t in named:
            t.grad = None
        return out

    def fused(p):
        return head_nll(hidden, p.weight, targets, p.lora_a, p.lora_b, p.scaling, dora=p.dora).mean()

    def reference(p):
        directed = p.weight + p.scaling * p.lora_b @ p.lora_a  # (V, d)
        magnitude = head.lora_magnitude_vector["default"].weight
        weight = (magnitude / directed.norm(dim=1))[:, None] * directed
        return F.cross_entropy(hidden @ weight.t(), targets)

    full = grads(fused, "differentiated")
    for got, want in zip(full, grads(reference, "differentiated"), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    constant = grads(fused, "constant")
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(full, constant, strict=True))


@pytest.mark.parametrize(
    "change,missing",
    [
        ({"target_modules": ("q_proj",)}, "lm_head as the only target"),
        ({"lora_dropout": 0.1}, "`lora_dropout` = 0"),
    ],
)
def test_differentiated_norm_is_refused_outside_the_fused_head(change, missing):
    config = tiny()
    ok = config.replace(adapter=config.adapter.replace(use_dora=True, dora_norm="differentiated"))
    assert validate_config(ok).adapter.dora_norm == "differentiated"
    with pytest.raises(ValueError, match=f"`dora_norm` = 'differentiated' needs .*{missing}"):
        validate_config(ok.replace(adapter=ok.adapter.replace(**change)))
    no_cache = ok.replace(train=ok.train.replace(cache_backbone=False))
    with pytest.raises(ValueError, match="`cache_backbone`"):
        validate_config(no_cache)
    plain = no_cache.replace(adapter=no_cache.adapter.replace(use_dora=False))
    assert validate_config(plain).adapter.dora_norm == "differentiated"  # without DoRA: no effect
