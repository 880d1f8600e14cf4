"""Mixed precision (`TrainConfig.precision`): autocast for the model's forward pass, in bf16 or
fp16 on a CUDA GPU (fp16 with a gradient scaler, as the official code trained) or bf16 on the
CPU. What QPA trains never leaves fp32: the generator runs with autocast off
(`qpa.adapters.qpa_lora`), the trainable tensors and their optimizer state are fp32, and the
fused lm_head loss takes fp32 rows. The cached backbone rows are always computed in fp32 (they
are shared by every later run on the same data, whatever its precision).

>>> check_precision("fp32", torch.device("cpu"))
>>> check_precision("fp16", torch.device("cpu"))
Traceback (most recent call last):
...
ValueError: `precision` = 'fp16' needs a CUDA GPU (this run's device is cpu); use `fp32`, or `bf16` (autocast on the CPU).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """ValueError, naming the field and the fix, when `device` cannot run `precision`."""
    if precision == "fp32":
        return
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            name = torch.cuda.get_device_name(device)
            raise ValueError(
                f"`precision` = 'bf16': this GPU ({name}) has no bf16 arithmetic; use `fp16` "
                "or `fp32`."
            )
        return
    if device.type == "cpu" and precision == "bf16":
        return
    fix = "use `fp32`, or `bf16` (autocast on the CPU)" if device.type == "cpu" else "use `fp32`"
    raise ValueError(
        f"`precision` = {precision!r} needs a CUDA GPU (this run's device is {device.type}); "
        f"{fix}."
    )


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The context a forward pass of the model runs in: nothing for fp32, else autocast."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 on CUDA (fp16 gradients underflow without one), else None."""
    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
