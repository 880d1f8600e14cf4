"""Where the studio keeps its runs, how it binds, and whether it runs as a capped demo.

Demo mode (``QPA_DEMO=1``, or on Hugging Face Spaces where ``SPACE_ID`` is set) limits what a
visitor can launch; every such limit lives in `Caps`, so there is one place to change them.

>>> s = Settings.from_env({"SPACE_ID": "me/qpa", "QPA_RUNS": "/data/runs"})
>>> s.demo, s.host, str(s.runs_root), s.caps.steps
(True, '0.0.0.0', '/data/runs', 60)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Caps:
    """Upper limits on one launch and one chat reply."""

    steps: int  # optimizer steps per run
    batch_size: int  # examples per step
    max_examples: int  # examples drawn from the corpus (0: no cap)
    max_length: int  # tokens per example
    max_new_tokens: int  # tokens per chat reply
    live_runs: int  # runs training at the same time


FULL = Caps(
    steps=100_000, batch_size=256, max_examples=0, max_length=1024, max_new_tokens=1024, live_runs=8
)
DEMO = Caps(
    steps=60, batch_size=16, max_examples=300, max_length=128, max_new_tokens=96, live_runs=2
)


@dataclass(frozen=True)
class Settings:
    runs_root: Path  # every run is a folder here (``$QPA_RUNS`` or ./runs)
    demo: bool  # capped demo mode
    on_spaces: bool  # running on Hugging Face Spaces
    host: str  # address the server binds

    @property
    def caps(self) -> Caps:
        return DEMO if self.demo else FULL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        on_spaces = bool(env.get("SPACE_ID"))
        demo = on_spaces or env.get("QPA_DEMO", "").strip().lower() in ("1", "true", "yes", "on")
        default_host = "0.0.0.0" if on_spaces else "127.0.0.1"
        return cls(
            runs_root=Path(env.get("QPA_RUNS") or "runs"),
            demo=demo,
            on_spaces=on_spaces,
            host=env.get("QPA_HOST") or default_host,
        )
