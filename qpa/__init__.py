"""QPA Studio's engine: Quantum Parameter Adaptation for any Hugging Face causal LM.

A simulated quantum circuit and a small mapping MLP generate the LoRA weights of a frozen model
(Liu et al., ICLR 2025). This package is the public API the CLI and the app use; names load
lazily so that ``import qpa`` stays light.

>>> import qpa
>>> paper = qpa.QPAConfig(chunk_size=2048, **qpa.PAPER_MAPPING)  # the paper's shape
>>> c = qpa.count_params("gpt2-config", qpa.AdapterConfig(rank=4), paper)
>>> c.qpa_params, c.lora_params
(106264, 204100)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "qpa.tool_config": ["ChatConfig", "CompareConfig", "VarianceConfig"],
    "qpa.formatting": ["format_duration", "format_number", "format_table"],
    "qpa.constants": ["ADAPTER_FILES", "CLAIM_ENV", "DEFAULT_MODEL", "HUB_ID"],
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
        "PAPER_MAPPING",
        "field_help",
    ],
    "qpa.quantum.kernels": ["ENTANGLERS", "one_thread"],
    "qpa.quantum.statevector": ["circuit_probs", "circuit_state"],
    "qpa.generator.circuit": ["QuantumCircuit", "make_circuit", "preview_probs"],
    "qpa.quantum.noise": ["noisy_probs", "density_matrix"],
    "qpa.quantum.shots": ["sample_counts", "sample_probs"],
    "qpa.studies.variance": [
        "COSTS", "gradient_variance", "fit_decay", "cost_gradients", "random_angles"
    ],
    "qpa.generator.mapping": ["postprocess", "basis_bits"],
    "qpa.generator.qpa_generator": ["QPAGenerator", "qubits_needed", "check_qubits", "chunk_for_qubits"],
    "qpa.adapters.counts": ["ParamCounts", "count_params", "largest_generator", "qubit_choices"],
    "qpa.adapters.qpa_lora": ["build_adapter", "adaptable_layers", "adaptable_suffixes", "resolve_targets"],
    "qpa.adapters.export": ["export_adapter", "load_adapter", "merge_adapter"],
    "qpa.models.loading": [
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
    "qpa.runs.records": ["STATES"],
    "qpa.runs.run": ["Run"],
    "qpa.runs.store": [
        "create_run",
        "list_runs",
        "open_run",
        "runs_root",
        "check_run_id",
        "new_run_id",
    ],
    "qpa.training.loop": ["evaluate", "train", "validate_config"],
    "qpa.training.plan": ["TrainingPlan", "plan_training", "rising_warning"],
    "qpa.training.best": ["headline"],
    "qpa.training.phases": ["describe_phase"],
    "qpa.training.estimate": ["estimate_run", "estimate_launch", "describe_estimate"],
    "qpa.inference.chat": ["ChatModel", "get_chat_model"],
    "qpa.flags": ["config_to_argv"],
    "qpa.studies.results": ["label", "markdown_table", "measurement_points", "param_points", "run_record", "summarize"],
    "qpa.studies.sweep": ["VARIANTS", "BEST_MEASURED", "apply_variant"],
    "qpa.studies.reproduce": ["RECIPES", "plan_recipe", "run_recipe"],
    "qpa.studies.compare": ["list_results", "load_result", "plan_comparison", "run_comparison"],
    "qpa.studies.compare_report": ["comparison_table", "describe_comparison", "frontier_svg"],
    "qpa.hub.push": ["push_run"],
    "qpa.hub.zerogpu": ["chunks", "gpu_chunk", "on_zerogpu", "settle"],
    "qpa.hub.gpu_plan": ["GpuPlan", "describe_gpu_launch", "plan_gpu"],
    "qpa.hub.zerogpu_errors": ["explain_zerogpu_error"],
    "qpa.hub.mirror": ["mirror_run", "restore_runs"],
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
