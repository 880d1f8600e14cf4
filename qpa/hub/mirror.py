"""Mirror finished runs to a Hugging Face Hub dataset, and restore them from it.

A Space without persistent storage loses its runs at every restart. Its owner can name a
dataset repo (the app reads ``$QPA_MIRROR_REPO``): each finished run's folder is uploaded to
``<repo>/<run id>/`` (`mirror_run`), and an empty runs folder is filled from it at startup
(`restore_runs`). The token is the owner's (``$HF_TOKEN``, a Space secret): the mirror is the
owner's repo, unlike a visitor's push. Without a token, offline, or with a repo the token may
not write, each fails at once with one ValueError and uploads nothing; nothing here waits on
huggingface_hub's retries. The dataset is created private.

>>> MIRROR_SKIP[:3]
['.lock', 'STOP', 'claim.json']
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from qpa.hub.push import TOKENS_PAGE, check_repo_id, hub_call
from qpa.models.hub_access import endpoint, hub_reachable
from qpa.runs.run import Run
from qpa.runs.store import list_runs, open_run

MIRROR_SKIP = [".lock", "STOP", "claim.json", ".*.tmp", ".adapter-*/**"]  # one process's files
FINISHED = ("done", "failed", "cancelled")


def mirror_run(run: Run, repo: str, token: str | None = None, api: Any = None) -> str:
    """Upload the finished `run`'s folder to ``<repo>/<run id>/`` in the dataset `repo`
    (created private when missing); returns the folder's URL. `api`: an ``HfApi`` (default:
    one for ``$HF_ENDPOINT`` with `token`)."""
    check_repo_id(repo)
    state = run.status().get("state")
    if state not in FINISHED:
        raise ValueError(f"`run` {run.id!r} is {state}; only a finished run is mirrored.")
    api = api or _api(repo, token)
    hub_call(repo, lambda: api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True))
    hub_call(repo, lambda: api.upload_folder(
        repo_id=repo, repo_type="dataset", folder_path=str(run.path), path_in_repo=run.id,
        commit_message=f"QPA Studio: run {run.id} ({state})", ignore_patterns=MIRROR_SKIP,
    ))  # fmt: skip
    return f"{endpoint()}/datasets/{repo}/tree/main/{run.id}"


def restore_runs(
    root: str | Path, repo: str, token: str | None = None, api: Any = None
) -> list[str]:
    """Fill the runs folder `root` from the dataset `repo` when it holds no run; returns the
    ids restored (none when `root` already has runs)."""
    check_repo_id(repo)
    root = Path(root)
    if list_runs(root):
        return []
    api = api or _api(repo, token)
    with tempfile.TemporaryDirectory(prefix="qpa-restore-") as tmp:
        if not hub_call(repo, lambda: _download(api, repo, tmp)):
            return []  # no mirror yet: the first start
        found = list_runs(tmp)  # folders that read as runs, nothing else
        root.mkdir(parents=True, exist_ok=True)
        restored = []
        for run in found:
            if not (root / run.id).exists():
                shutil.copytree(run.path, root / run.id, ignore=shutil.ignore_patterns(".cache"))
                restored.append(run.id)
    return [open_run(i, root).id for i in restored]


def _download(api, repo: str, folder: str) -> bool:
    """Download the dataset into `folder`; False when it does not exist yet."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        api.snapshot_download(repo_id=repo, repo_type="dataset", local_dir=folder)
    except RepositoryNotFoundError:
        return False
    return True


def _api(repo: str, token: str | None):
    """An ``HfApi`` with the owner's token, once the token and the network are there."""
    token = (token or os.environ.get("HF_TOKEN") or "").strip()
    if not token:
        raise ValueError(
            f"`repo` = {repo!r}: no token to write the mirror; set HF_TOKEN (on a Space: a "
            f"secret in its settings) to a token with write access ({TOKENS_PAGE})."
        )
    if not hub_reachable():
        raise ValueError(
            f"`repo` = {repo!r}: the Hugging Face Hub ({endpoint()}) cannot be reached from here "
            "(offline); runs are not mirrored."
        )
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token, library_name="qpa-studio")
