"""What a run config must pass before any run folder exists: defaults resolved, the device,
its precision and the launch (`qpa.training.launch`), the tracker, the model and its targets,
the qubits, and data that splits into training and validation examples.
"""

from __future__ import annotations

from qpa.config import RunConfig
from qpa.training.launch import check_launch
from qpa.training.precision import check_precision
from qpa.training.session import pick_device


def validate_config(config: RunConfig) -> RunConfig:
    """Resolve defaults and check model, targets, qubits and data (both splits must hold
    examples) before any run folder exists."""
    from qpa.adapters.counts import count_params, lora_layout
    from qpa.data.splits import check_corpus
    from qpa.models.loading import SHAPE_PRESETS
    from qpa.training.plan import plan_training
    from qpa.training.trackers import check_tracker

    config = config.resolved()
    device = pick_device(config.train.device)  # no GPU, a bad $QPA_DEVICE: fail before any folder
    check_precision(config.train.precision, device)
    check_launch(config.train.processes, device, config.train.batch_size)
    check_tracker(config.train.report_to)
    if config.model.model in SHAPE_PRESETS:
        raise ValueError(
            f"`model` = {config.model.model!r} is a shape-only preset for counting; train "
            "`smollm2`, a tiny-* preset, a Hub id or a local model folder."
        )
    layout = lora_layout(config.model.model, config.adapter.target_modules, config.adapter.rank)
    if config.adapter.use_dora and config.adapter.dora_norm == "differentiated":
        check_differentiated_norm(config, layout.targets)
    if config.adapter.method == "qpa-lora":
        count_params(config.model.model, config.adapter, config.qpa)  # too few qubits raise here
    check_corpus(config.data)
    plan_training(config)  # a topic selection or corpus too small to split raises here
    return config


def check_differentiated_norm(config: RunConfig, targets: tuple[str, ...]) -> None:
    """`dora_norm` = "differentiated" lives in the fused lm_head loss only: say what is missing
    (without DoRA it does nothing, like `dora_magnitude`)."""
    from qpa.models.loading import build_model
    from qpa.training.session import can_cache_head

    missing = [
        *(["`cache_backbone`"] if not config.train.cache_backbone else []),
        *(["`lora_dropout` = 0"] if config.adapter.lora_dropout else []),
    ]
    if not can_cache_head(build_model(config.model.model, device="meta"), list(targets)):
        missing.append("lm_head as the only target")
    if missing:
        raise ValueError(f"`dora_norm` = 'differentiated' needs {', '.join(missing)}.")
