"""QPA Studio's engine: Quantum Parameter Adaptation for any Hugging Face causal LM.

A simulated quantum circuit and a small mapping MLP generate the LoRA weights of a frozen model
(Liu et al., ICLR 2025). This package is the public API the CLI and the app use; names load
lazily so that ``import qpa`` stays light.

>>> import qpa
>>> c = qpa.count_params("gpt2-config", qpa.AdapterConfig(rank=4), qpa.QPAConfig(chunk_size=2048))
>>> c.qpa, c.lora
(106264, 204100)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "qpa.config": [
        "AdapterConfig",
        "DataConfig",
        "ModelConfig",
        "QPAConfig",
        "RunConfig",
        "TrainConfig",
        "SECTIONS",
        "METHODS",
        "DEFAULT_LR",
        "MAX_NOISY_QUBITS",
        "field_help",
    ],
    "qpa.quantum.statevector": [
        "ENTANGLERS",
        "circuit_probs",
        "circuit_state",
        "QuantumCircuit",
        "make_circuit",
    ],
    "qpa.quantum.noise": ["noisy_probs", "density_matrix"],
    "qpa.quantum.shots": ["sample_counts", "sample_probs"],
    "qpa.studies.variance": [
        "COSTS", "gradient_variance", "fit_decay", "cost_gradients", "random_angles", "one_thread"
    ],
    "qpa.generator.mapping": ["postprocess", "basis_bits"],
    "qpa.generator.qpa_generator": ["QPAGenerator", "qubits_needed", "check_qubits"],
    "qpa.adapters.counts": ["ParamCounts", "count_params"],
    "qpa.adapters.qpa_lora": ["build_adapter", "adaptable_layers", "resolve_targets"],
    "qpa.adapters.export": ["export_adapter", "load_adapter", "merge_adapter"],
    "qpa.models.loading": [
        "DEFAULT_MODEL",
        "HUB_ID",
        "PRESETS",
        "SHAPE_PRESETS",
        "TINY_PRESETS",
        "build_model",
        "load_model",
        "model_source",
        "qpa_home",
    ],
    "qpa.data.splits": [
        "MAX_UPLOAD_BYTES",
        "build_splits",
        "chatterbot_topics",
        "check_upload",
        "preview",
    ],
    "qpa.runs.run": [
        "STATES",
        "Run",
        "create_run",
        "list_runs",
        "open_run",
        "runs_root",
        "check_run_id",
    ],
    "qpa.training.loop": ["evaluate", "validate_config"],
    "qpa.training.phases": ["describe_phase"],
    "qpa.training.estimate": ["estimate_run", "estimate_launch", "describe_estimate"],  # not `train`: it would shadow the module
    "qpa.inference.chat": ["ChatModel", "get_chat_model"],
    "qpa.flags": ["config_to_argv"],
    "qpa.studies.results": ["label", "markdown_table", "run_record", "summarize"],
    "qpa.studies.sweep": ["VARIANTS", "BEST_MEASURED", "apply_variant"],
    "qpa.studies.reproduce": ["RECIPES", "plan_recipe", "run_recipe"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'qpa' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
