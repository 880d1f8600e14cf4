"""The studio's state: its settings and the job launcher. No gradio, no session data.

Everything about a run lives in its run directory, so a page reload or an app restart loses
nothing: the page asks the runs root what exists and what is still running.

>>> studio = Studio.create(runs_root="/tmp/qpa-doctest-runs", demo=True)
>>> studio.caps.steps, studio.root.name
(60, 'qpa-doctest-runs')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from app.jobs import Jobs
from app.mirror import Mirror
from app.settings import Caps, Settings

UPLOADS_DIR = ".uploads"


@dataclass
class Studio:
    settings: Settings
    jobs: Jobs
    mirror: Mirror | None = None  # finished runs copied to the owner's Hub dataset

    @classmethod
    def create(
        cls, runs_root: str | Path | None = None, demo: bool | None = None, env=None
    ) -> Studio:
        """Settings from the environment, with `runs_root` and `demo` overriding it."""
        settings = Settings.from_env(env)
        if runs_root is not None:
            settings = dataclasses.replace(settings, runs_root=Path(runs_root))
        if demo is not None:
            settings = dataclasses.replace(settings, demo=demo)
        jobs = Jobs(settings.runs_root, settings.max_runs, spawn=not settings.zerogpu)
        repo = settings.mirror_repo
        return cls(settings, jobs, Mirror(settings.runs_root, repo) if repo else None)

    @property
    def root(self) -> Path:
        return self.settings.runs_root

    @property
    def caps(self) -> Caps:
        return self.settings.caps

    @property
    def uploads_dir(self) -> Path:
        """Private (0700) folder of accepted uploads, beside the runs (list_runs skips it)."""
        return self.root / UPLOADS_DIR
