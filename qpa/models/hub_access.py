"""Is the Hugging Face Hub reachable? Asked once with a short connection attempt, so that an
offline machine gets a clear answer at once instead of huggingface_hub's retries (about 30 s
for a model id that is not cached).

>>> import os
>>> os.environ["HF_HUB_OFFLINE"] = "1"
>>> hub_reachable()
False
>>> del os.environ["HF_HUB_OFFLINE"]
"""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlparse

DEFAULT_ENDPOINT = "https://huggingface.co"
REMEMBER_S = 30.0  # how long an answer is reused: the Design tab asks on every model change
_answers: dict[str, tuple[float, bool]] = {}


def hub_offline_env() -> bool:
    """Whether ``$HF_HUB_OFFLINE`` says to stay offline."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def endpoint() -> str:
    """The Hub's address: ``$HF_ENDPOINT`` or https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub opens within `timeout` seconds (name lookup
    included, which has no timeout of its own, so it runs in a thread). False at once when
    ``$HF_HUB_OFFLINE`` is set; an answer is reused for `REMEMBER_S` seconds."""
    if hub_offline_env():
        return False
    address = endpoint()
    when, answer = _answers.get(address, (float("-inf"), False))
    if time.monotonic() - when < REMEMBER_S:
        return answer
    answer = _connects(urlparse(address), timeout)
    _answers[address] = (time.monotonic(), answer)
    return answer


def _connects(url, timeout: float) -> bool:
    port = url.port or (443 if url.scheme == "https" else 80)
    result = {"ok": False}

    def connect() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            result["ok"] = True
        except OSError:
            pass

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return result["ok"]
