"""Freeze generated weights into a standard peft adapter folder, or merge them into the base.

The folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` under peft's own key
names, so ``PeftModel.from_pretrained(base, folder)`` loads it without importing `qpa`, and
inference needs no simulator.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from qpa.adapters.model_card import fix_adapter_config
from qpa.adapters.qpa_lora import ADAPTER, QPALoRA
from qpa.constants import ADAPTER_FILES


def adapter_state(peft_model: nn.Module, tuner: QPALoRA | None) -> dict[str, torch.Tensor]:
    """Adapter weights (LoRA matrices, DoRA magnitudes) under peft's saved key names: the
    model's own adapter Parameters, and the tensors `qpa` generates (as the model uses them)."""
    from peft.utils import get_peft_model_state_dict

    state = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    if tuner is not None:
        state.update(tuner.lora_state())
    saved = get_peft_model_state_dict(
        peft_model, state_dict=state, adapter_name=ADAPTER, save_embedding_layers=False
    )
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in saved.items()}


def export_adapter(
    peft_model: nn.Module, tuner: QPALoRA | None, out_dir: str | Path, base_model: str = ""
) -> Path:
    """Write the adapter folder atomically (a temp folder renamed into place); returns its path.

    A run's ``.adapter-*`` leftovers from a killed export are removed by `Run.remove_temps`.
    The folder is a standard peft adapter naming its base model by Hub id (`base_model`, see
    `qpa.adapters.model_card.hub_base_model`) with ``task_type`` CAUSAL_LM: it loads with
    ``PeftModel.from_pretrained`` and ``AutoPeftModelForCausalLM.from_pretrained``.

    >>> import tempfile
    >>> from qpa.adapters.qpa_lora import build_adapter
    >>> from qpa.config import AdapterConfig, QPAConfig
    >>> from qpa.models.loading import load_model
    >>> model, qpa = build_adapter(load_model("tiny-llama")[0], AdapterConfig(), QPAConfig(chunk_size=64))
    >>> folder = export_adapter(model, qpa, f"{tempfile.mkdtemp()}/adapter", base_model="tiny-llama")
    >>> sorted(p.name for p in folder.iterdir())
    ['adapter_config.json', 'adapter_model.safetensors']
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=out_dir.parent))
    try:
        config = peft_model.peft_config[ADAPTER]
        config.save_pretrained(tmp)
        fix_adapter_config(tmp, base_model or None)  # the Hub id, task_type CAUSAL_LM
        state = adapter_state(peft_model, tuner)
        broken = [k for k, v in state.items() if not torch.isfinite(v).all()]
        if broken:
            raise ValueError(
                f"The adapter's {broken[0]} holds NaN or infinite values; nothing is exported."
            )
        save_file(state, tmp / "adapter_model.safetensors", metadata={"format": "pt"})
        _fsync_files(tmp)
        _swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _fsync_files(folder: Path) -> None:
    for path in (p for p in folder.iterdir() if p.is_file()):
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`; an old folder is renamed away first and deleted after, so a
    reader (or a kill at any moment) finds the old adapter, the new one or none, never a mix."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=".adapter-old-", dir=out_dir.parent))
    os.replace(out_dir, old / out_dir.name)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def load_adapter(base: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """The base model with an exported adapter applied (plain peft, no `qpa` needed)."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    missing = [f for f in ADAPTER_FILES if not (adapter_dir / f).is_file()]
    if missing:
        raise ValueError(
            f"`adapter` folder {adapter_dir} lacks {', '.join(missing)}; export it first."
        )
    check_adapter(adapter_dir)
    return PeftModel.from_pretrained(base, adapter_dir)


def check_adapter(adapter_dir: Path) -> None:
    """ValueError naming the damaged file unless the folder's config is a mapping with a whole
    rank ``r`` and its weights are readable safetensors whose LoRA matrices have that rank."""
    from safetensors import safe_open

    path = adapter_dir / ADAPTER_FILES[0]
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from None
    rank = config.get("r") if isinstance(config, dict) else None
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{path}: `r` = {rank!r} is not a whole rank ≥ 1.")
    path = adapter_dir / ADAPTER_FILES[1]
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{path} is unreadable: {e}") from None
    if config.get("rank_pattern"):
        return  # per-layer ranks: peft checks them
    for key, shape in shapes.items():
        got = shape[0] if ".lora_A." in key else shape[-1] if ".lora_B." in key else rank
        if got != rank:
            raise ValueError(
                f"{path}: {key} has rank {got} but {ADAPTER_FILES[0]} says `r` = {rank}."
            )


def merge_adapter(base: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """A plain transformers model with the adapter merged in (ΔW = (α/r)·B·A, DoRA's magnitude
    rescaling too); a tied lm_head is untied first."""
    out = base.get_output_embeddings()
    inp = base.get_input_embeddings()
    if out is not None and inp is not None and out.weight is inp.weight:
        out.weight = nn.Parameter(out.weight.detach().clone())  # merging must not touch embeddings
        base.config.tie_word_embeddings = False
        if hasattr(base.config, "get_text_config"):
            base.config.get_text_config().tie_word_embeddings = False
    return load_adapter(base, adapter_dir).merge_and_unload()
