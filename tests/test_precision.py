"""`--precision`: fp32 is the exact path; bf16 autocasts the model's forward (on the CPU here,
on CUDA too) while the generator and every trainable tensor stay fp32; a precision the device
cannot run is refused before anything is written, naming the field and the fix."""

import pytest
import torch

from qpa.cli.main import main
from qpa.config import AdapterConfig, DataConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig
from qpa.training.precision import check_precision, grad_scaler
from qpa.training.session import prepare, split_loss


def tiny(precision: str, targets=("q_proj", "lm_head"), cache_backbone: bool = False) -> RunConfig:
    return RunConfig(
        model=ModelConfig(model="tiny-llama"),
        adapter=AdapterConfig(rank=2, target_modules=targets),
        qpa=QPAConfig(chunk_size=128, depth=2),
        data=DataConfig(topics=("ai",), max_length=48, max_examples=40),
        train=TrainConfig(precision=precision, cache_backbone=cache_backbone, device="cpu"),
    ).resolved()


def test_an_unknown_precision_names_the_field():
    with pytest.raises(ValueError, match="`precision` = 'fp8' is not one of: fp32, bf16, fp16"):
        TrainConfig(precision="fp8")


@pytest.mark.parametrize(
    "precision, device, message",
    [
        ("fp16", "cpu", "`precision` = 'fp16' needs a CUDA GPU (this run's device is cpu); use "
                        "`fp32`, or `bf16` (autocast on the CPU)."),
        ("bf16", "mps", "`precision` = 'bf16' needs a CUDA GPU (this run's device is mps); use "
                        "`fp32`."),
        ("fp16", "mps", "`precision` = 'fp16' needs a CUDA GPU (this run's device is mps)"),
    ],
)  # fmt: skip
def test_a_precision_the_device_cannot_run_is_refused(precision, device, message):
    with pytest.raises(ValueError) as error:
        check_precision(precision, torch.device(device))
    assert str(error.value).startswith(message)


def test_fp32_and_cpu_bf16_pass_and_only_cuda_fp16_scales_gradients():
    for precision in ("fp32", "bf16"):
        check_precision(precision, torch.device("cpu"))
    check_precision("fp32", torch.device("mps"))
    assert grad_scaler(torch.device("cpu"), "bf16") is None
    assert grad_scaler(torch.device("cpu"), "fp32") is None


def test_the_cli_refuses_fp16_on_the_cpu_before_writing(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["train", "--model", "tiny-llama", "--precision", "fp16", "--device", "cpu",
            "--runs-dir", str(runs)]  # fmt: skip
    assert main(argv) == 2
    assert "`precision` = 'fp16' needs a CUDA GPU" in capsys.readouterr().err
    assert not runs.exists()


@pytest.mark.chatterbot
@pytest.mark.parametrize(
    "targets, cache_backbone",
    [(("q_proj", "lm_head"), False),  # the full forward, logits from the model
     (("lm_head",), False),  # the backbone's forward, then the fused fp32 head loss
     (("lm_head",), True)],  # cached rows: computed in fp32 once, whatever the precision
)  # fmt: skip
def test_bf16_autocasts_the_model_and_keeps_the_generator_and_gradients_fp32(
    targets, cache_backbone
):
    exact = prepare(tiny("fp32", targets, cache_backbone))
    mixed = prepare(tiny("bf16", targets, cache_backbone))
    examples = torch.tensor([3, 0, 7, 11])
    with exact.autocast():
        assert exact.model(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype == torch.float32
    with mixed.autocast():
        assert mixed.model(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype == torch.bfloat16
    nll_exact, _ = split_loss(exact, "train", examples)
    nll_mixed, _ = split_loss(mixed, "train", examples)
    assert nll_mixed.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in mixed.tuner.written())  # generated in fp32
    torch.testing.assert_close(nll_mixed, nll_exact, atol=0.05, rtol=0.01)  # bf16's precision
    assert torch.equal(nll_mixed, nll_exact) == cache_backbone  # else the forward ran in bf16
    nll_mixed.mean().backward()
    grads = [p.grad for _, p in mixed.trainable()]
    assert all(g is not None and g.dtype == torch.float32 and g.isfinite().all() for g in grads)


@pytest.mark.chatterbot
def test_fp32_is_the_default_path_bit_for_bit():
    default = RunConfig.from_dict({**tiny("fp32").to_dict(), "train": {
        k: v for k, v in tiny("fp32").train.to_dict().items() if k != "precision"}})  # fmt: skip
    a, b = prepare(tiny("fp32")), prepare(default.resolved())
    examples = torch.tensor([1, 2])
    assert torch.equal(split_loss(a, "train", examples)[0], split_loss(b, "train", examples)[0])
