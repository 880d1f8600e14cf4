"""Where the studio keeps its runs, how it binds, how many runs train at once, and whether it
runs as a capped demo.

Demo mode (``QPA_DEMO=1``, or on Hugging Face Spaces where ``SPACE_ID`` is set) limits what a
visitor can launch; every such limit lives in `Caps`, so there is one place to change them.
``QPA_MAX_RUNS`` (default 1, right for 2 CPU cores) runs may train at once; later launches
wait in a queue. The server binds 127.0.0.1 unless ``QPA_HOST`` (or Spaces) says otherwise.

A Space's disk is lost at every restart unless persistent storage is mounted at ``/data``
(``QPA_SPACES_DATA`` moves it): then the runs root defaults to ``/data/runs`` and the caches
(`use_persistent_storage`) to ``/data``; without it the app says that runs are temporary.
On ZeroGPU hardware (``SPACES_ZERO_GPU`` and the `spaces` package) a launch trains inside the
Start request in GPU-sized calls instead of in background processes. ``QPA_MIRROR_REPO``
(USER/NAME) names a Hub dataset that finished runs are copied to, and restored from when the
runs folder is empty at startup.

>>> s = Settings.from_env({"SPACE_ID": "me/qpa", "QPA_SPACES_DATA": "/no-storage", "QPA_MAX_RUNS": "2"})
>>> s.demo, s.host, str(s.runs_root), s.persistent, s.caps.steps, s.max_runs
(True, '0.0.0.0', 'runs', False, 60, 2)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qpa import on_zerogpu

SPACES_DATA = "/data"  # where a Space mounts its persistent storage

@dataclass(frozen=True)
class Caps:
    """Upper limits on one launch and one chat reply."""

    steps: int  # optimizer steps per run
    batch_size: int  # examples per step
    max_examples: int  # examples drawn from the corpus (0: no cap)
    max_length: int  # tokens per example
    max_new_tokens: int  # tokens per chat reply
    max_prompt_chars: int  # characters of one chat message or prompt
    live_runs: int  # runs queued or training at once (launches beyond it are refused)
    any_model: bool  # train and chat any Hub id or folder (a demo: the presets only)
    variance_work: int  # gradient-variance explorer: samples × Σ 2^N·L (~3 M a second)


FULL = Caps(
    steps=100_000, batch_size=256, max_examples=0, max_length=1024, max_new_tokens=1024,
    max_prompt_chars=32_000, live_runs=32, any_model=True, variance_work=2**31,
)  # fmt: skip
DEMO = Caps(  # 500 examples: 450 train / 50 validation, enough for a steady perplexity
    steps=60, batch_size=16, max_examples=500, max_length=128, max_new_tokens=96,
    max_prompt_chars=2_000, live_runs=8, any_model=False, variance_work=2**25,
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    runs_root: Path  # every run is a folder here (``$QPA_RUNS`` or ./runs)
    demo: bool  # capped demo mode
    on_spaces: bool  # running on Hugging Face Spaces
    host: str  # address the server binds
    max_runs: int = 1  # runs training at once; the rest wait in the queue
    persistent: bool = True  # runs outlive a restart (not on a Space without storage)
    login: bool = False  # a Space with Hugging Face login (``hf_oauth: true`` sets OAUTH_CLIENT_ID)
    zerogpu: bool = False  # ZeroGPU hardware: launches train in the request, one GPU call a chunk
    mirror_repo: str = ""  # a Hub dataset (USER/NAME) finished runs are copied to

    @property
    def caps(self) -> Caps:
        return DEMO if self.demo else FULL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        on_spaces = bool(env.get("SPACE_ID"))
        demo = on_spaces or env.get("QPA_DEMO", "").strip().lower() in ("1", "true", "yes", "on")
        default_host = "0.0.0.0" if on_spaces else "127.0.0.1"
        data = persistent_storage(env)
        runs_root = Path(env.get("QPA_RUNS") or (data / "runs" if data else "runs"))
        return cls(
            runs_root=runs_root,
            demo=demo,
            on_spaces=on_spaces,
            host=env.get("QPA_HOST") or default_host,
            max_runs=_max_runs(env.get("QPA_MAX_RUNS", "")),
            persistent=not on_spaces or (data is not None and runs_root.is_relative_to(data)),
            login=on_spaces and bool(env.get("OAUTH_CLIENT_ID")),
            zerogpu=on_zerogpu(env),
            mirror_repo=(env.get("QPA_MIRROR_REPO") or "").strip(),
        )


def persistent_storage(env: Mapping[str, str]) -> Path | None:
    """A Space's mounted persistent storage (a writable ``/data``), or None."""
    data = Path(env.get("QPA_SPACES_DATA") or SPACES_DATA)
    on_spaces = bool(env.get("SPACE_ID"))
    return data if on_spaces and data.is_dir() and os.access(data, os.W_OK) else None


def use_persistent_storage(env: dict[str, str] | None = None) -> Path | None:
    """On a Space with persistent storage, point the caches there (the model cache
    ``QPA_HOME``, the Hugging Face cache ``HF_HOME``) unless they are set; call it before
    gradio or huggingface_hub is imported. Returns the storage folder, or None."""
    env = os.environ if env is None else env
    data = persistent_storage(env)
    if data is not None:
        env.setdefault("QPA_HOME", str(data / "qpa-cache"))
        env.setdefault("HF_HOME", str(data / ".huggingface"))
    return data


def import_spaces_first(env: Mapping[str, str] | None = None) -> bool:
    """On ZeroGPU, import `spaces` before torch or gradio set anything up, as it asks; call it
    first thing. Returns whether it did."""
    if not on_zerogpu(env):
        return False
    import spaces  # noqa: F401

    return True


def _max_runs(text: str) -> int:
    """``QPA_MAX_RUNS`` as a whole number ≥ 1 (empty: 1); ValueError naming it otherwise."""
    if not text.strip():
        return 1
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"`QPA_MAX_RUNS` = {text!r} must be a whole number ≥ 1.")
    return int(text)
