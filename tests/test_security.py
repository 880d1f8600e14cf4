"""Safe to host: loopback unless told, an upload cap, no pickle or eval, uploads kept private,
downloads confined to the runs root, secrets never written into a run, demo caps."""

import pytest

pytest.importorskip("gradio", reason="the app tests need gradio (requirements.txt)")

import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from tiny_run import tiny_form

from app.handlers import runs, train
from app.settings import DEMO, Settings
from app.state import Studio
from app.ui import launch_kwargs
from qpa import MAX_UPLOAD_BYTES, DataConfig, RunConfig, create_run, list_runs

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    ROOT / "app.py",
    *sorted((ROOT / "qpa").rglob("*.py")),
    *sorted((ROOT / "app").rglob("*.py")),
]
UNSAFE = {
    "pickle": re.compile(r"\b(c?pickle|dill|joblib)\b"),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only=True)"),
    "yaml.load": re.compile(r"\byaml\.(load|unsafe_load|full_load)\("),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\("),
    "remote code": re.compile(r"trust_remote_code\s*=\s*True"),
    "a shell": re.compile(r"shell\s*=\s*True|os\.system\("),
}


def test_a_bad_setting_stops_the_app_with_one_line():
    """T2: `QPA_MAX_RUNS=abc python app.py` says what is wrong in one line, no traceback."""
    env = {**os.environ, "QPA_MAX_RUNS": "abc"}
    out = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr == "error: `QPA_MAX_RUNS` = 'abc' must be a whole number ≥ 1.\n"


def test_binds_loopback_unless_told_and_caps_uploads():
    local = launch_kwargs(Studio.create(env={}))
    assert local["server_name"] == "127.0.0.1" and local["show_error"] is False
    assert local["max_file_size"] == MAX_UPLOAD_BYTES == 20 * 2**20
    assert launch_kwargs(Studio.create(env={"QPA_HOST": "0.0.0.0"}))["server_name"] == "0.0.0.0"
    space = Studio.create(env={"SPACE_ID": "me/qpa"})
    assert launch_kwargs(space)["server_name"] == "0.0.0.0" and space.caps == DEMO
    assert Settings.from_env({"QPA_DEMO": "1"}).caps.max_new_tokens <= 128


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_loading_or_evaluation_in_the_source(path):
    text = path.read_text(encoding="utf-8")
    found = [what for what, pattern in UNSAFE.items() if pattern.search(text)]
    assert not found, f"{path.name}: {found}"


def test_pickled_weights_are_refused(tmp_path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from qpa.models.loading import load_model

    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=8, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no safetensors weights; pickled"):
        load_model(str(tmp_path))


def test_accepted_uploads_are_copied_into_a_private_folder(tmp_path):
    studio = Studio.create(runs_root=tmp_path / "runs", demo=False)
    upload = tmp_path / "gradio" / "notes (1).txt"
    upload.parent.mkdir()
    upload.write_text("One paragraph.\n\nAnother one.\n")
    config = RunConfig(data=DataConfig(corpus=str(upload)))
    kept = Path(train.keep_upload(studio, config).data.corpus)
    assert kept.parent == studio.uploads_dir.resolve() and kept.read_bytes() == upload.read_bytes()
    assert kept.name.endswith("-notes__1_.txt")
    assert stat.S_IMODE(studio.uploads_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert list_runs(studio.root) == []  # the uploads folder is not a run


def test_adapter_zip_never_follows_symlinks_out_of_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    studio = Studio.create(runs_root=tmp_path / "runs", demo=False)
    run = create_run(RunConfig(), studio.root, name="r")
    run.adapter_dir.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (run.adapter_dir / name).write_text("{}")
    (run.adapter_dir / "leak.txt").symlink_to(outside / "secret.txt")
    archive = runs.zip_adapter(studio, "r")
    assert sorted(zipfile.ZipFile(archive).namelist()) == ["adapter_config.json",
                                                           "adapter_model.safetensors"]  # fmt: skip
    assert stat.S_IMODE(Path(archive).parent.stat().st_mode) == 0o700  # a private temp folder

    evil = create_run(RunConfig(), studio.root, name="evil")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (outside / name).write_text("{}")
    evil.adapter_dir.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        runs.zip_adapter(studio, "evil")


@pytest.mark.chatterbot
def test_no_secrets_in_any_run_file(tmp_path, monkeypatch):
    secrets = {"HF_TOKEN": "hf_qpaTestSecret0123456789", "OPENAI_API_KEY": "sk-qpaTestKey98765"}
    for name, value in {**secrets, "QPA_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1",
                        "OMP_NUM_THREADS": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    studio = Studio.create(runs_root=tmp_path / "runs", demo=False)
    form = tiny_form(n_qubits=3, steps=2, max_length=48, loss_on="all")
    (run_id,), _ = train.launch(studio, form)
    assert studio.jobs.wait(run_id, timeout=120)["state"] == "done"
    run = list_runs(studio.root)[0]
    run.log(f"a message quoting {secrets['HF_TOKEN']}")
    run.set_status(message=f"and {secrets['OPENAI_API_KEY']}")
    files = [p for p in studio.root.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"config.json", "versions.json", "status.json", "train.log"} <= names
    assert f"{run_id}.log" in names  # the process output, in .jobs/
    for path in files:
        data = path.read_bytes()
        assert not any(v.encode() in data for v in secrets.values()), path
    assert "***" in run.log_text() and run.status()["message"] == "and ***"
    assert set(__import__("json").loads((run.path / "versions.json").read_text())) == {
        "python", "platform", "torch", "transformers", "peft", "qpa"}  # fmt: skip
    assert os.environ["HF_TOKEN"] == secrets["HF_TOKEN"]  # still there for the Hub, just unlogged
