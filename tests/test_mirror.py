"""Mirroring finished runs to a Hub dataset, and restoring them after a restart.

`FakeHfApi` keeps dataset repos as local folders and applies `ignore_patterns` with
huggingface_hub's own `filter_repo_objects`, as ``HfApi.upload_folder`` does; no network. The
failure paths use the real ``HfApi`` path: no token, and the Hub offline.
"""

import dataclasses
import shutil
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub.errors import RepositoryNotFoundError
from huggingface_hub.utils import filter_repo_objects
from tiny_run import TINY_RUN

from app.handlers import hub
from app.mirror import LEDGER, Mirror
from app.state import Studio
from qpa.hub.mirror import mirror_run, restore_runs
from qpa.runs.store import create_run, open_run
from qpa.training.loop import train

REPO = "me/qpa-runs"


class FakeHfApi:
    """Dataset repos as folders under `remote`; every call recorded."""

    def __init__(self, remote: Path) -> None:
        self.remote, self.calls = remote, []

    def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, repo_type, private))
        (self.remote / repo_id).mkdir(parents=True, exist_ok=exist_ok)
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, *, repo_id, repo_type, folder_path, path_in_repo, commit_message,
                      ignore_patterns=None):  # fmt: skip
        self.calls.append(("upload_folder", repo_id, repo_type, path_in_repo))
        base = Path(folder_path)
        files = [str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, ignore_patterns=ignore_patterns):
            target = self.remote / repo_id / path_in_repo / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(base / name, target)

    def snapshot_download(self, *, repo_id, repo_type, local_dir):
        self.calls.append(("snapshot_download", repo_id, repo_type))
        if not (self.remote / repo_id).is_dir():  # as the Hub answers for a missing repo
            url = f"https://huggingface.co/api/datasets/{repo_id}"
            response = httpx2.Response(404, request=httpx2.Request("GET", url))
            raise RepositoryNotFoundError(f"404 Client Error. Repository Not Found for url: {url}",
                                          response=response)  # fmt: skip
        shutil.copytree(self.remote / repo_id, local_dir, dirs_exist_ok=True)
        return local_dir


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A runs root with a finished tiny run and a queued one."""
    root = tmp_path_factory.mktemp("runs")
    corpus = root.parent / "corpus.txt"
    corpus.write_text("\n\n".join(f"Line {i} about qubits." for i in range(30)))
    config = dataclasses.replace(
        TINY_RUN, data=dataclasses.replace(TINY_RUN.data, corpus=str(corpus), topics=())
    )
    train(config, create_run(config, root, name="finished"))
    create_run(config, root, name="waiting")
    return root


def test_finished_runs_are_mirrored_then_restored_into_an_empty_runs_folder(finished, tmp_path):
    api = FakeHfApi(tmp_path / "hub")
    first = Mirror(tmp_path / "first-start", REPO, api=api)
    assert first.restore() == [] and first.restore_error is None  # no dataset yet: nothing to say
    mirror = Mirror(finished, REPO, api=api)
    assert mirror.sync() == ["finished"]  # the queued run waits until it finishes
    assert ("create_repo", REPO, "dataset", True) in api.calls  # a private dataset
    copied = tmp_path / "hub" / REPO / "finished"
    assert (copied / "adapter" / "adapter_model.safetensors").is_file()
    assert (copied / "adapter" / "README.md").is_file() and (copied / "metrics.jsonl").is_file()
    assert not (copied / ".lock").exists() and not (copied / "claim.json").exists()
    assert mirror.sync() == []  # copied once
    assert (finished / LEDGER).is_file()

    restarted = tmp_path / "restarted-runs"  # a Space restarted without persistent storage
    again = Mirror(restarted, REPO, api=api)
    assert again.restore() == ["finished"] and again.restore_error is None
    run, original = open_run("finished", restarted), open_run("finished", finished)
    assert run.status()["state"] == "done" and run.has_adapter()
    assert run.metrics() == original.metrics() and run.load_state()[1] == original.load_state()[1]
    assert "1 run(s) were restored" in again.describe()
    assert restore_runs(restarted, REPO, api=api) == []  # never over runs that are there


def test_a_run_is_copied_again_when_it_finishes_again_and_never_while_held(finished, tmp_path):
    api = FakeHfApi(tmp_path / "hub")
    mirror = Mirror(finished, REPO, api=api)
    (finished / LEDGER).unlink(missing_ok=True)
    run = open_run("finished", finished)
    run.lock()  # a trainer holds it (ZeroGPU between two GPU calls)
    try:
        assert mirror.pending() == []
    finally:
        run.unlock()
    assert mirror.sync() == ["finished"]
    status = run.status()
    run.set_status("done", finished="2099-01-01T00:00:00")  # resumed and finished again
    try:
        assert [r.id for r in mirror.pending()] == ["finished"]
    finally:
        run.set_status("done", finished=status["finished"])


def test_mirroring_fails_at_once_and_plainly_without_a_token_or_offline(finished, monkeypatch):
    run = open_run("finished", finished)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ValueError, match="no token to write the mirror; set HF_TOKEN"):
        mirror_run(run, REPO)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "m" * 30)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tic = time.perf_counter()
    with pytest.raises(ValueError, match=r"cannot be reached from here \(offline\); runs are not"):
        mirror_run(run, REPO)
    with pytest.raises(ValueError, match="only a finished run"):
        mirror_run(open_run("waiting", finished), REPO, api=object())
    (finished / LEDGER).unlink(missing_ok=True)
    mirror = Mirror(finished, REPO)
    assert mirror.sync() == []  # logged and recorded, never raised
    assert "offline" in mirror.ledger()["finished"]["error"]
    assert mirror.pending() == []  # retried later, not on every look
    assert time.perf_counter() - tic < 5
    assert run.status()["state"] == "done"  # the run itself is untouched


def test_the_app_mirrors_where_the_owner_names_a_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "o" * 30)  # the owner's secret
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = {"SPACE_ID": "me/qpa", "QPA_MIRROR_REPO": REPO, "QPA_SPACES_DATA": "/no-storage"}
    studio = Studio.create(runs_root=tmp_path / "runs", env=env)
    assert studio.mirror is not None and studio.mirror.repo == REPO
    studio.mirror.restore()  # what the app does at startup: offline, it says so and goes on
    text = hub.notice(studio)
    assert text.startswith("**Runs in progress are lost when this Space restarts**")
    assert f"[{REPO}](https://huggingface.co/datasets/{REPO})" in text
    assert "Restoring failed at this start" in text and "offline" in text
    assert Studio.create(runs_root=tmp_path, env={}).mirror is None
