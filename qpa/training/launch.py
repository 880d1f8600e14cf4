"""How this process was launched: alone, or as one of N started by `accelerate launch`
(torchrun or mpirun underneath), read from the launcher's environment without importing torch,
so the CLI can tell rank 0 (which writes and prints) from the others before anything loads.

>>> from types import SimpleNamespace
>>> check_launch(2, SimpleNamespace(type="cpu"))  # in a process started alone
Traceback (most recent call last):
...
ValueError: `processes` = 2: this is one process started without a launcher; start them with `accelerate launch --multi_gpu --num_processes 2 -m qpa train …` (e.g. `--device cpu` to try it on the CPU).
"""

from __future__ import annotations

import os

RANK_ENV = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
SIZE_ENV = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
LAUNCH = "accelerate launch --multi_gpu --num_processes {n} -m qpa train …"


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launched_processes() -> int:
    """How many processes the launcher (accelerate, torchrun, mpirun) started: 1 without one."""
    return max(1, _env_int(SIZE_ENV, 1))


def launched_rank() -> int:
    """This process's rank among them (0 without a launcher)."""
    return _env_int(RANK_ENV, 0)


def check_launch(processes: int, device, batch_size: int = 0) -> None:
    """ValueError, with the command to use, when the asked process count is not what was
    launched, when the global batch cannot give every process an example, when FSDP is asked
    for on the CPU, or when accelerate's own mixed precision is set (`TrainConfig.precision`
    says it, so that the generator stays fp32)."""
    launched = launched_processes()
    if 0 < batch_size < launched:
        raise ValueError(
            f"`batch_size` = {batch_size} is the global batch, shared by the {launched} "
            f"processes launched; give each at least one example: `batch_size` ≥ {launched}."
        )
    if processes > 1 and launched == 1:
        raise ValueError(
            f"`processes` = {processes}: this is one process started without a launcher; start "
            f"them with `{LAUNCH.format(n=processes)}` (e.g. `--device cpu` to try it on the CPU)."
        )
    if processes and launched > 1 and processes != launched:
        raise ValueError(
            f"`processes` = {processes}, but the launcher started {launched}; launch "
            f"`--num_processes {processes}`, or leave `processes` at 0 (as launched)."
        )
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true", "yes"):
        if device.type != "cuda":
            raise ValueError(
                f"FSDP (accelerate's `distributed_type: FSDP`) shards the model across CUDA GPUs; "
                f"this run's device is {device.type}. Launch with `--multi_gpu` (DDP) instead, "
                "e.g. configs/accelerate/ddp-2gpu.yaml."
            )
        raise ValueError(
            "FSDP (accelerate's `distributed_type: FSDP`) is not supported yet: QPA trains well "
            "under 1 M parameters, and DDP keeps a full copy of the frozen model per GPU; launch "
            "with configs/accelerate/ddp-2gpu.yaml (`--multi_gpu`)."
        )
    mixed = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if mixed not in ("", "no"):
        raise ValueError(
            f"accelerate's `mixed_precision` = {mixed!r}: set it with `--precision` instead (the "
            "QPA generator stays fp32 under it), and launch with `--mixed_precision no`."
        )
