"""Shared fixtures: tiny models built from a config (no download), seeded; a served studio.

Training in the tests runs on ``$QPA_TEST_DEVICE`` (default cpu; ``cuda`` on a GPU machine): it
becomes ``$QPA_DEVICE``, which `device = auto` follows, in this process and in the CLI and app
processes the tests start.
"""

import contextlib
import importlib.util
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

TEST_DEVICE = os.environ.get("QPA_TEST_DEVICE", "cpu")
os.environ["QPA_DEVICE"] = TEST_DEVICE
HAS_CHATTERBOT = importlib.util.find_spec("chatterbot_corpus") is not None
NO_CHATTERBOT = "needs the chatterbot-corpus package (pip install chatterbot-corpus==1.3.3)"
CHATTERBOT_DOCTESTS = ("qpa/data/corpora.py", "qpa/data/splits.py")  # their examples read it


def pytest_configure(config):
    config.addinivalue_line("markers", f"chatterbot: {NO_CHATTERBOT}")
    config.addinivalue_line(
        "markers", "spaces_smoke: a fresh venv from requirements.txt started as a Space "
        "(minutes; skipped where pip reaches no package index)"
    )  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """Without the chatterbot corpus, the tests that read it are skipped, saying why."""
    if HAS_CHATTERBOT:
        return
    for item in items:
        doctest = item.nodeid.split("::")[0] in CHATTERBOT_DOCTESTS
        if doctest or item.get_closest_marker("chatterbot"):
            item.add_marker(pytest.mark.skip(reason=NO_CHATTERBOT))


def tiny_llama(vocab: int = 96, hidden: int = 16) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(vocab: int = 96, hidden: int = 16) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=2, n_head=2, n_positions=64)
    ).eval()


@pytest.fixture
def llama():
    return tiny_llama()


@pytest.fixture
def gpt2():
    return tiny_gpt2()


@contextlib.contextmanager
def served_studio(runs_root, demo: bool = False, studio=None):
    """The studio (default: over `runs_root`, full or `demo`) launched on a free loopback port;
    yields its URL."""
    from app.state import Studio
    from app.ui import build_app, launch_kwargs

    studio = studio or Studio.create(runs_root=runs_root, demo=demo)
    demo = build_app(studio)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kwargs = {**launch_kwargs(studio), "server_name": "127.0.0.1", "server_port": port}
    demo.launch(**kwargs, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        studio.jobs.stop_poller()
        wait_for_handlers()


STUDIO_CODE = tuple(str(Path(__file__).resolve().parent.parent / part) + os.sep for part in ("app", "qpa"))


def wait_for_handlers(timeout_s: float = 60.0) -> None:
    """Wait until no other thread runs the studio's code (a handler the page started, such as
    the launch estimate): a thread still inside torch when the interpreter exits aborts it
    ("terminate called without an active exception")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(
        tid != threading.get_ident() and _runs_studio_code(frame)
        for tid, frame in sys._current_frames().items()
    ):
        time.sleep(0.1)


def _runs_studio_code(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith(STUDIO_CODE):
            return True
        frame = frame.f_back
    return False
