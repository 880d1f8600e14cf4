"""The training loop: cached head equals the full forward, both methods learn, runs are recorded."""

import math

import pytest
import torch

from qpa.config import AdapterConfig, DataConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig
from qpa.training.loop import (
    batch_examples,
    evaluate,
    lr_factor,
    make_optimizer,
    train,
    train_step,
    validate_config,
)
from qpa.training.session import prepare, split_loss

DATA = DataConfig(topics=("ai", "science", "computers"), max_length=48, max_examples=120)


def tiny(method="qpa-lora", **train_kw):
    return RunConfig(
        model=ModelConfig(model="tiny-llama"),
        adapter=AdapterConfig(method=method, rank=2),
        qpa=QPAConfig(chunk_size=128, depth=2),
        data=DATA,
        train=TrainConfig(**{"steps": 20, "eval_every": 10, "batch_size": 8, **train_kw}),
    ).resolved()


@pytest.mark.chatterbot
@pytest.mark.parametrize("method", ["qpa-lora", "lora"])
@pytest.mark.parametrize("perplexity", ["masked", "paper"])
def test_cached_head_loss_equals_full_forward(method, perplexity):
    config = tiny(method, perplexity=perplexity)
    cached = prepare(config)
    full = prepare(config.replace(train=config.train.replace(cache_backbone=False)))
    assert cached.head_only and not full.head_only
    with torch.no_grad():  # same adapter in both; LoRA's B made non-zero so the adapter matters
        for (_, a), (_, b) in zip(cached.trainable(), full.trainable(), strict=True):
            if method == "lora":
                a.normal_().mul_(0.1)
            b.copy_(a)
    examples = torch.tensor([3, 0, 7, 11])
    nll_c, assistant_c = split_loss(cached, "train", examples)
    nll_f, assistant_f = split_loss(full, "train", examples)
    torch.testing.assert_close(nll_c, nll_f, atol=1e-5, rtol=0)
    assert torch.equal(assistant_c, assistant_f)
    nll_c.mean().backward()
    nll_f.mean().backward()
    for (_, a), (_, b) in zip(cached.trainable(), full.trainable(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.chatterbot
def test_paper_protocol_counts_padding():
    config = tiny().replace(data=DATA.replace(max_length=400, max_examples=40))  # most get padded
    masked = prepare(config)
    paper = prepare(config.replace(train=config.train.replace(perplexity="paper")))
    val = masked.splits.val
    assert masked.rows["val"].targets.numel() == int(val.attention_mask[:, 1:].sum())
    assert paper.rows["val"].targets.numel() == val.input_ids.shape[0] * 399
    assert paper.rows["val"].targets.numel() > masked.rows["val"].targets.numel()


@pytest.mark.chatterbot
@pytest.mark.parametrize("method", ["qpa-lora", "lora"])
def test_both_methods_learn(method):
    events = []
    result = train(tiny(method, steps=30), callbacks=[events.append])
    evals = [e for e in events if e["event"] == "eval"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 30
    assert evals[-1]["perplexity"] < 0.5 * evals[0]["perplexity"]
    assert result["state"] == "done" and result["val_perplexity"] == evals[-1]["perplexity"]
    assert "assistant_perplexity" in evals[-1]


@pytest.mark.chatterbot
def test_lora_starts_at_the_base_model():
    base = evaluate(tiny("lora"))
    events = []
    train(tiny("lora", steps=1), callbacks=[events.append])
    first = next(e for e in events if e["event"] != "prepare")  # phases come first
    assert first["event"] == "eval" and first["perplexity"] == pytest.approx(
        base["perplexity"], rel=1e-6
    )


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup_fraction=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.5, abs=0.02) and lr_factor(99, cfg) < 0.01
    assert lr_factor(50, cfg.replace(schedule="constant")) == 1.0


def test_batches_cover_each_epoch_and_are_reproducible():
    epoch = torch.cat([batch_examples(20, 8, 3, s) for s in range(3)])
    assert sorted(epoch.tolist()) == list(range(20))
    assert torch.equal(batch_examples(20, 8, 3, 4), batch_examples(20, 8, 3, 4))
    assert not torch.equal(batch_examples(20, 8, 3, 0), batch_examples(20, 8, 4, 0))


def test_bad_training_values_name_the_field():
    with pytest.raises(ValueError, match="`steps` = 0"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="`lr` = -0.1"):
        TrainConfig(lr=-0.1)


@pytest.mark.chatterbot
def test_assistant_only_loss_skips_other_tokens():
    session = prepare(tiny())
    examples = torch.tensor([0, 1, 2, 3])
    nll, assistant = split_loss(session, "train", examples)
    only, flags = split_loss(session, "train", examples, assistant_only=True)
    assert 0 < only.numel() < nll.numel() and bool(flags.all())
    torch.testing.assert_close(only, nll[assistant])


@pytest.mark.chatterbot
def test_assistant_only_training_learns_replies():
    result = train(tiny(loss_on="assistant", steps=30))
    base = evaluate(tiny())
    assert result["val_assistant_perplexity"] < 0.5 * base["assistant_perplexity"]


@pytest.mark.chatterbot
def test_a_batch_without_replies_still_trains_on_its_tokens():
    session = prepare(tiny(loss_on="assistant"))
    rows = session.rows["train"]
    no_reply = [
        i
        for i in range(rows.n_examples)
        if not rows.assistant[rows.select(torch.tensor([i]))].any()
    ]
    if not no_reply:  # make one: drop the reply flags of example 0
        rows.assistant[rows.select(torch.tensor([0]))] = False
        no_reply = [0]
    only, _ = split_loss(session, "train", torch.tensor(no_reply[:1]), assistant_only=True)
    assert only.numel() == 0
    optimizer = make_optimizer(session)
    session.config = session.config.replace(train=session.config.train.replace(batch_size=1))
    step = next(
        s
        for s in range(10_000)
        if batch_examples(rows.n_examples, 1, 0, s).tolist() == no_reply[:1]
    )
    before = [p.detach().clone() for _, p in session.trainable()]
    metrics = train_step(session, optimizer, step)
    assert math.isfinite(metrics["loss"])
    assert any(not torch.equal(b, p) for b, (_, p) in zip(before, session.trainable(), strict=True))


def test_auto_device_follows_qpa_device(monkeypatch):
    from qpa.training.session import pick_device

    monkeypatch.setenv("QPA_DEVICE", "cpu")
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setenv("QPA_DEVICE", "gpu")
    with pytest.raises(ValueError, match="QPA_DEVICE = 'gpu' is not one of"):
        validate_config(RunConfig(model=ModelConfig("tiny-llama")))
