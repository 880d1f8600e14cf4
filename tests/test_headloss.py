"""The fused head loss equals plain linear + cross-entropy, values and gradients, in every mode."""

import pytest
import torch
import torch.nn.functional as F

from qpa.adapters.head_loss import head_nll, head_parts
from qpa.adapters.qpa_lora import build_adapter
from qpa.config import AdapterConfig, QPAConfig
from qpa.training.session import output_head
from tests.conftest import tiny_llama

R, D, V, RANK = 53, 24, 5000, 4  # a realistic vocabulary, few rows


def tensors(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(R, D, generator=g, dtype=dtype)
    weight = torch.randn(V, D, generator=g, dtype=dtype) * 0.5
    bias = torch.randn(V, generator=g, dtype=dtype)
    a = (torch.randn(RANK, D, generator=g, dtype=dtype) * 0.3).requires_grad_()
    b = (torch.randn(V, RANK, generator=g, dtype=dtype) * 0.3).requires_grad_()
    targets = torch.randint(0, V, (R,), generator=g)
    return hidden, weight, bias, a, b, targets


def plain_nll(hidden, weight, targets, a=None, b=None, scaling=1.0, bias=None):
    logits = F.linear(hidden, weight, bias)  # (R, V)
    if a is not None:
        logits = logits + scaling * (hidden @ a.t()) @ b.t()
    return F.cross_entropy(logits, targets, reduction="none")


@pytest.mark.parametrize("chunk_rows", [0, 1, 7, 64])
@pytest.mark.parametrize("upstream", ["mean", "sum", "weighted"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_matches_plain_values_and_lora_grads(chunk_rows, upstream, with_bias):
    hidden, weight, bias, a, b, targets = tensors()
    bias = bias if with_bias else None
    weights = {
        "mean": torch.full((R,), 1 / R),  # what training uses: the fast exact path
        "sum": torch.ones(R),
        "weighted": torch.rand(R, generator=torch.Generator().manual_seed(1)),  # recomputed
    }[upstream]
    plain = plain_nll(hidden, weight, targets, a, b, 2.0, bias)
    want = torch.autograd.grad((plain * weights).sum(), (a, b))
    fused = head_nll(hidden, weight, targets, a, b, 2.0, bias, chunk_rows=chunk_rows)
    got = torch.autograd.grad((fused * weights).sum(), (a, b))
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=0)
    scale = weights.sum().item()  # gradients grow with the total upstream weight
    for g_fused, g_plain in zip(got, want, strict=True):
        torch.testing.assert_close(g_fused, g_plain, atol=1e-5 * scale, rtol=1e-4)


def test_fused_grad_of_hidden_in_float64():
    hidden, weight, bias, a, b, targets = tensors(torch.float64)
    hidden.requires_grad_()
    plain = plain_nll(hidden, weight, targets, a, b, 0.5, bias)
    want = torch.autograd.grad(plain.mean(), (hidden, a, b))
    fused = head_nll(hidden, weight, targets, a, b, 0.5, bias, chunk_rows=16)
    got = torch.autograd.grad(fused.mean(), (hidden, a, b))
    torch.testing.assert_close(fused, plain, atol=1e-12, rtol=0)
    for g_fused, g_plain in zip(got, want, strict=True):
        torch.testing.assert_close(g_fused, g_plain, atol=1e-12, rtol=1e-10)


def test_fused_without_lora_and_without_grad():
    hidden, weight, bias, a, b, targets = tensors()
    torch.testing.assert_close(
        head_nll(hidden, weight, targets, bias=bias), plain_nll(hidden, weight, targets, bias=bias)
    )
    with torch.no_grad():
        nll = head_nll(hidden, weight, targets, a, b, 2.0)
    assert not nll.requires_grad
    torch.testing.assert_close(nll, plain_nll(hidden, weight, targets, a, b, 2.0).detach())
    assert head_nll(hidden[:0], weight, targets[:0], a, b).shape == (0,)


def test_fused_rejects_bad_shapes_and_a_trainable_head():
    hidden, weight, _, a, b, targets = tensors()
    with pytest.raises(ValueError, match="`targets`"):
        head_nll(hidden, weight, targets[:-1])
    with pytest.raises(ValueError, match="`lora_a`"):
        head_nll(hidden, weight, targets, a, b[:-1])
    with pytest.raises(ValueError, match="frozen"):
        head_nll(hidden, weight.requires_grad_(), targets, a, b)


def qpa_head(**adapter):
    model, qpa = build_adapter(
        tiny_llama(vocab=300), AdapterConfig(rank=3, **adapter), QPAConfig(chunk_size=64, depth=2)
    )
    return model, qpa, output_head(model)


def test_gradients_flow_back_to_the_qpa_generator():
    model, qpa, head = qpa_head()
    hidden = torch.randn(40, 16, generator=torch.Generator().manual_seed(2))
    targets = torch.randint(0, 300, (40,), generator=torch.Generator().manual_seed(3))
    grads = []
    for fused in (False, True):
        qpa.generator.zero_grad(set_to_none=True)
        qpa.materialize()
        parts = head_parts(head)
        if fused:
            nll = head_nll(hidden, parts.weight, targets, parts.lora_a, parts.lora_b, parts.scaling)
        else:
            nll = F.cross_entropy(head(hidden), targets, reduction="none")
        nll.mean().backward()
        grads.append([p.grad.clone() for p in qpa.generator.parameters()])
    assert all(g.abs().sum() > 0 for g in grads[1])
    for g_fused, g_plain in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(g_fused, g_plain, atol=1e-6, rtol=1e-4)


def test_head_parts_falls_back_where_the_fused_path_does_not_apply():
    model, _, head = qpa_head()
    parts = head_parts(head)
    assert parts.lora_a.shape == (3, 16) and parts.lora_b.shape == (300, 3)
    assert parts.scaling == head.scaling["default"]
    model, _, head = qpa_head(lora_dropout=0.1)
    assert head_parts(head.train()) is None  # dropout acts: the plain path keeps it
    assert head_parts(head.eval()).lora_a is not None  # dropout is the identity in eval
    with model.disable_adapter():
        assert head_parts(head).lora_a is None  # the base layer alone
    frozen = torch.nn.Linear(4, 5).requires_grad_(False)
    assert head_parts(frozen).lora_a is None
    assert head_parts(frozen.double()) is None and head_parts(frozen.float().train()) is not None
    assert head_parts(torch.nn.Linear(4, 5)) is None  # a trainable head needs its own gradient


@pytest.mark.chatterbot
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_split_loss_takes_the_fused_path_unless_dropout_acts(monkeypatch, dropout):
    from qpa.config import DataConfig, ModelConfig, RunConfig
    from qpa.training import session as session_module
    from qpa.training.loop import evaluate_split

    calls = []
    fused = session_module.head_nll
    monkeypatch.setattr(
        session_module, "head_nll", lambda *a, **k: calls.append(1) or fused(*a, **k)
    )
    config = RunConfig(
        model=ModelConfig(model="tiny-llama"),
        adapter=AdapterConfig(rank=2, lora_dropout=dropout),
        qpa=QPAConfig(chunk_size=128, depth=2),
        data=DataConfig(topics=("ai",), max_length=32, max_examples=40),
    ).resolved()
    session = session_module.prepare(config)
    session.model.train()
    nll, _ = session_module.split_loss(session, "train", torch.arange(4))
    nll.mean().backward()
    assert len(calls) == (1 if dropout == 0 else 0)
    before = len(calls)
    evaluate_split(session)  # evaluation: dropout is off, so always fused
    assert len(calls) > before


def test_memory_stays_within_the_chunk_budget_over_many_chunks(monkeypatch):
    import threading

    from qpa.adapters import head_loss as headloss
    monkeypatch.setattr(headloss, "CHUNK_BYTES", 200 * V * 4 // 7)  # 28 rows a chunk
    hidden, weight, bias, a, b, targets = tensors()
    hidden = torch.cat([hidden] * 5)  # 265 rows: 10 chunks
    targets = torch.cat([targets] * 5)
    out = {}

    def run():  # a fresh thread: its logits buffer starts empty
        nll = head_nll(hidden, weight, targets, a, b, 2.0, bias)
        out["grads"] = torch.autograd.grad(nll.mean(), (a, b))
        out["nll"], out["buffers"] = nll.detach(), dict(headloss._buffers.by_kind)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    plain = plain_nll(hidden, weight, targets, a, b, 2.0, bias)
    torch.testing.assert_close(out["nll"], plain.detach(), atol=1e-5, rtol=0)
    want = torch.autograd.grad(plain.mean(), (a, b))
    for g_fused, g_plain in zip(out["grads"], want, strict=True):
        torch.testing.assert_close(g_fused, g_plain, atol=1e-5, rtol=1e-4)
    assert [t.numel() for t in out["buffers"].values()] == [27 * V]  # 265 rows in 10 of 27


def full_forward_session(model: str, method: str, perplexity: str, dropout: float = 0.0):
    """A session of `model` adapting lm_head alone, its backbone run on every batch (not
    cached); LoRA's B made non-zero so that the adapter matters."""
    from qpa.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from qpa.training.session import prepare

    config = RunConfig(
        model=ModelConfig(model=model),
        adapter=AdapterConfig(method=method, rank=2, lora_dropout=dropout),
        qpa=QPAConfig(chunk_size=128, depth=2),
        data=DataConfig(topics=("ai",), max_length=48, max_examples=40),
        train=TrainConfig(cache_backbone=False, perplexity=perplexity),
    ).resolved()
    session = prepare(config)
    if method == "lora":
        with torch.no_grad():
            for _, p in session.trainable():
                p.normal_().mul_(0.1)
    return session


@pytest.mark.chatterbot
@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2"])  # GPT-2: dropout in the backbone
@pytest.mark.parametrize("method", ["qpa-lora", "lora"])
@pytest.mark.parametrize("perplexity", ["masked", "paper"])
def test_the_full_forward_fuses_the_head_loss_and_equals_the_plain_path(
    monkeypatch, model, method, perplexity
):
    """lm_head alone, backbone not cached (the reproduce protocol): no (rows × vocab) logits,
    in training and in evaluation; values and gradients equal the logits path to 1e-5."""
    from qpa.training import session as session_module
    from qpa.training.loop import evaluate_split

    session = full_forward_session(model, method, perplexity)
    assert session.head_alone and not session.head_only
    examples = torch.tensor([3, 0, 7, 11])
    session.model.train()
    torch.manual_seed(1)  # the same dropout masks in both paths
    plain = F.cross_entropy(session_module.full_logits(session, "train", examples).float(),
                            session.rows["train"].targets[session.rows["train"].select(examples)],
                            reduction="none")  # fmt: skip
    want = torch.autograd.grad(plain.mean(), [p for _, p in session.trainable()])

    def refuse(*_):
        raise AssertionError("the full (rows × vocab) logits were built")

    monkeypatch.setattr(session_module, "full_logits", refuse)
    torch.manual_seed(1)
    fused, _ = session_module.split_loss(session, "train", examples)
    got = torch.autograd.grad(fused.mean(), [p for _, p in session.trainable()])
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=0)
    for g_fused, g_plain in zip(got, want, strict=True):
        torch.testing.assert_close(g_fused, g_plain, atol=1e-5, rtol=1e-4)
    metrics = evaluate_split(session)  # evaluation: fused too (full_logits refuses)
    assert metrics["tokens"] == session.rows["val"].targets.numel()


@pytest.mark.chatterbot
def test_the_full_forward_keeps_the_logits_path_while_lora_dropout_acts(monkeypatch):
    from qpa.training import session as session_module

    session = full_forward_session("tiny-llama", "qpa-lora", "masked", dropout=0.1)
    calls = []
    full = session_module.full_logits
    monkeypatch.setattr(session_module, "full_logits", lambda *a: calls.append(1) or full(*a))
    session.model.train()
    session_module.split_loss(session, "train", torch.arange(4))
    assert calls == [1]  # dropout acts on the head's input: the plain path, as when cached
    session.model.eval()
    session_module.split_loss(session, "val", torch.arange(2))
    assert calls == [1]  # evaluation: dropout is the identity, the fused loss applies
