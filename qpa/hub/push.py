"""Push a run's adapter (or merged model) with its model card to a Hugging Face Hub repo.

The token is `token` (a Space passes the visitor's own OAuth token) or ``$HF_TOKEN``. Each way
a push cannot work gets one clear ValueError before anything is uploaded, at once: no token,
the Hub unreachable (checked with a short connection attempt, no retries), a token the Hub
rejects or that can only read, a repo the token may not write. `huggingface_hub` is imported
only here, only when pushing.

>>> check_repo_id("me/qpa-adapter")
'me/qpa-adapter'
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from qpa.hub.folder import run_adapter, write_export
from qpa.models.hub_access import endpoint, hub_reachable
from qpa.runs.run import Run

_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
TOKENS_PAGE = "https://huggingface.co/settings/tokens"


def check_repo_id(repo: str) -> str:
    """`repo` if it reads USER/NAME (or ORG/NAME); ValueError naming `repo` otherwise."""
    if not _REPO.fullmatch(repo or "") or ".." in repo or repo.endswith((".git", ".")):
        raise ValueError(f"`repo` = {repo!r} must read USER/NAME, e.g. me/qpa-smollm2.")
    return repo


def hub_token(token: str | None = None) -> str:
    """`token`, else ``$HF_TOKEN``; ValueError saying how to get one when there is none."""
    token = (token or os.environ.get("HF_TOKEN") or "").strip()
    if not token:
        raise ValueError(
            "`token`: no Hugging Face token. Set HF_TOKEN to a token with write access "
            f"({TOKENS_PAGE}), or log in with your Hugging Face account on the Space."
        )
    return token


def push_run(
    run: Run, repo: str, token: str | None = None, private: bool = False, merged: bool = False
) -> str:
    """Upload the run's adapter folder (`merged`: the base model with it merged in), model card
    included, to the model repo `repo` (created when missing); returns the repo's URL."""
    check_repo_id(repo)
    run_adapter(run)  # a run without an adapter fails before any network
    token = hub_token(token)
    if not hub_reachable():
        raise ValueError(
            f"`repo` = {repo!r}: the Hugging Face Hub ({endpoint()}) cannot be reached from "
            "here (offline); nothing was pushed. Download the adapter instead, or push from a "
            "machine with a network."
        )
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint(), token=token, library_name="qpa-studio")
    user = hub_call(repo, api.whoami)
    role = ((user.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise ValueError(
            f"`token` of {user.get('name')!r} is read-only; pushing to {repo!r} needs a token "
            f"with write access ({TOKENS_PAGE})."
        )
    url = hub_call(repo, lambda: api.create_repo(repo, private=private, exist_ok=True))
    with tempfile.TemporaryDirectory(prefix="qpa-push-") as tmp:
        folder = Path(tmp) / run.id
        write_export(run, folder, merged)
        what = "merged model" if merged else "adapter"
        hub_call(repo, lambda: api.upload_folder(
            repo_id=repo, folder_path=folder, commit_message=f"QPA Studio: {what} of run {run.id}"
        ))  # fmt: skip
    return str(url)


def hub_call(repo: str, fn):
    """`fn()`, with the Hub's HTTP and network errors turned into one plain ValueError."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return fn()
    except HfHubHTTPError as e:
        code = getattr(e.response, "status_code", None)
        if code == 401:
            raise ValueError(
                f"`token`: the Hub rejected it (invalid or expired); make a new one at "
                f"{TOKENS_PAGE}."
            ) from None
        if code == 403:
            raise ValueError(
                f"`repo` = {repo!r}: this token may not write there (not your namespace, or a "
                "fine-grained token without write access to it); nothing was pushed."
            ) from None
        raise ValueError(f"`repo` = {repo!r}: the Hub answered {str(e).splitlines()[0]}") from None
    except httpx.TransportError as e:
        raise ValueError(
            f"`repo` = {repo!r}: the Hub could not be reached ({type(e).__name__}); nothing "
            "was pushed."
        ) from None
