"""What a Space does: persistent storage or the "runs are temporary" notice, the visitor's own
login for pushing, ZeroGPU-sized chunks of training, and a smoke run as a Space starts it
(``SPACE_ID`` set, offline, a tiny model)."""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from space_smoke import run_smoke

from qpa.config import DataConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig
from qpa.hub.zerogpu import chunks
from qpa.runs.store import create_run
from qpa.training.loop import train

BENCH = Path(__file__).resolve().parent / "bench" / "bench_space_venv.py"


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


def test_a_space_starts_trains_exports_and_fails_to_push_offline(tmp_path):
    """A Space's start with this interpreter (tests/space_smoke.py): SPACE_ID and the OAuth
    variables set, the Hub offline, no /data, no embedded model package; the fresh-venv version
    is test_a_fresh_venv_with_only_requirements_starts_as_a_space."""
    out = run_smoke(sys.executable, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SMOKE OK" in out.stdout
    assert "PUSH `repo` = 'me/qpa-tiny': the Hugging Face Hub" in out.stdout
    assert "cannot be reached from here (offline)" in out.stdout


def index_answers() -> bool:
    """Whether pip reaches a package index: one small download, a minute at most."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                   "--disable-pip-version-check", "-d", tmp, "packaging"]  # fmt: skip
        try:
            return subprocess.run(command, capture_output=True, timeout=60).returncode == 0
        except subprocess.TimeoutExpired:
            return False


@pytest.mark.spaces_smoke
def test_a_fresh_venv_with_only_requirements_starts_as_a_space():
    """tests/bench/bench_space_venv.py as a test: a venv with requirements.txt and nothing else
    (about 3 minutes, most of it installing torch), then tests/space_smoke.py with it."""
    if not index_answers():
        pytest.skip("pip reaches no package index here")
    spec = importlib.util.spec_from_file_location("bench_space_venv", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with tempfile.TemporaryDirectory(prefix="qpa-venv-") as tmp:  # 1.5 GB: gone afterwards
        result = bench.space_in_fresh_venv(Path(tmp) / "venv")
    assert result["returncode"] == 0, result["stderr"]
    assert result["embedded_model_absent"] and "SMOKE OK" in result["stdout"]
    assert "cannot be reached from here (offline)" in result["stdout"]
