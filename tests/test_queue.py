"""The run queue: at most QPA_MAX_RUNS train at once, the rest wait with their position shown;
a queued run cancelled never starts; two schedulers over one root never start a run twice; and
the queue, living in the run folders, survives the app being killed."""

import pytest

pytest.importorskip("gradio", reason="the app tests need gradio (requirements.txt)")

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tiny_run import tiny_form as shared_tiny_form

from app.handlers import train
from app.jobs import Jobs
from app.settings import Settings
from app.state import Studio
from qpa import RunConfig, TrainConfig, create_run, list_runs, open_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def quick(tmp_path, monkeypatch):
    """Children train tiny models on one thread, offline, with private caches."""
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("QPA_MAX_RUNS", raising=False)
    return tmp_path


def tiny_form(**overrides) -> dict:
    return shared_tiny_form(**{"n_qubits": 3, "max_length": 48, "loss_on": "all", **overrides})


def test_max_runs_comes_from_the_environment():
    assert Settings.from_env({}).max_runs == 1
    assert Settings.from_env({"QPA_MAX_RUNS": "3"}).max_runs == 3
    with pytest.raises(ValueError, match="`QPA_MAX_RUNS` = 'two'"):
        Settings.from_env({"QPA_MAX_RUNS": "two"})


@pytest.mark.chatterbot
def test_one_at_a_time_with_positions_and_a_queued_cancel_that_never_starts(quick):
    studio = Studio.create(runs_root=quick / "runs", demo=False)
    first, _ = train.launch(studio, tiny_form(plan="QPA + matched LoRA baseline"))
    (second,), _ = train.launch(studio, tiny_form())
    assert len({*first, second}) == 3 and len(list_runs(studio.root)) == 3
    assert studio.jobs.state(first[0])["state"] in ("starting", "running")
    lora, later = studio.jobs.state(first[1]), studio.jobs.state(second)
    assert (lora["state"], lora["position"], lora["queued"]) == ("queued", 1, 2)
    assert (later["position"], later["training"], later["max_runs"]) == (2, 1, 1)
    assert "queued: position 2 of 2" in train.run_card(studio, second)

    train.on_cancel(studio, [second])
    cancelled = open_run(second, studio.root)
    for _ in range(3):
        studio.jobs.schedule()  # a freed slot must never go to the cancelled run
    status = cancelled.status()
    assert (status["state"], status["started"], status["pid"]) == ("cancelled", None, None)
    assert cancelled.claim_info()["token"] == "cancel" and not cancelled.metrics()

    done = [studio.jobs.wait(i, timeout=150) for i in first]
    assert [s["state"] for s in done] == ["done", "done"], [s.get("error") for s in done]
    assert done[1]["started"] >= done[0]["finished"]  # the baseline waited for its slot
    assert cancelled.status()["state"] == "cancelled" and not cancelled.metrics()


def _sleepers(monkeypatch):
    """Jobs start a sleeping process instead of training: slots fill, nothing trains."""
    monkeypatch.setattr(
        Jobs, "command", lambda self, run_id: [sys.executable, "-c", "import time; time.sleep(60)"]
    )


def test_two_schedulers_on_one_root_never_double_start(quick, monkeypatch):
    _sleepers(monkeypatch)
    root = quick / "runs"
    ids = [
        create_run(RunConfig(train=TrainConfig(steps=1)), root, name=f"r{i}").id for i in range(5)
    ]
    apps = [Jobs(root, max_runs=2), Jobs(root, max_runs=2)]  # two app processes, in effect
    started, barrier = [], threading.Barrier(6)

    def schedule(jobs):
        barrier.wait()
        started.extend(jobs.schedule())

    threads = [threading.Thread(target=schedule, args=(apps[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(started) == ids[:2]  # the two oldest, once each
        assert sorted(apps[0].training()) == ids[:2] and apps[1].queue() == ids[2:]
        claims = [open_run(i, root).claim_info() for i in ids[:2]]
        pids = [c["pid"] for c in claims]
        assert len(set(pids)) == 2 and all(p not in (os.getpid(), None) for p in pids)
        for pid in pids:  # the processes die before training: their slots free up
            os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 10
        while {open_run(i, root).status()["state"] for i in ids[:2]} != {"failed"}:
            assert time.time() < deadline
            for jobs in apps:
                jobs.poll()  # reaps the dead child, which otherwise lingers as a zombie
            time.sleep(0.05)
        assert "ended without output" in open_run(ids[0], root).status()["error"]
        assert sorted(apps[1].schedule() + apps[0].schedule()) == ids[2:4]
    finally:
        for jobs in apps:
            for proc in jobs._procs.values():
                proc.kill()
                proc.wait()


# -- the app killed while runs are live ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env: dict, log: Path) -> tuple[subprocess.Popen, object]:
    """``python app.py`` on a free port, and a gradio_client connected to it."""
    gradio_client = pytest.importorskip("gradio_client")
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={**env, "GRADIO_SERVER_PORT": str(port)}, start_new_session=True,
        )  # fmt: skip
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            return proc, gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:  # not listening yet
            assert time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)


@pytest.mark.chatterbot
def test_app_killed_with_live_runs_restarts_and_finishes_them(quick):
    root = quick / "runs"
    env = {**os.environ, "QPA_RUNS": str(root), "QPA_MAX_RUNS": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    log = quick / "app.log"
    app, client = start_app(env, log)
    try:
        form = tiny_form(plan="QPA + matched LoRA baseline", steps=60, eval_every=30)
        client.predict(*[form[k] for k in train.FORM_FIELDS], api_name="/launch")
    finally:
        os.killpg(app.pid, signal.SIGKILL)  # the app dies; its runs do not
        app.wait()
    studio = Studio.create(runs_root=root, demo=False)
    ids = [r.id for r in sorted(list_runs(root), key=lambda r: r.config.adapter.method != "qpa-lora")]
    assert len(ids) == 2 and studio.jobs.state(ids[1])["state"] == "queued"
    assert studio.jobs.state(ids[0])["state"] in ("starting", "running", "done")

    app, client = start_app(env, log)
    try:
        rows = client.predict([], api_name="/runs")[0]["value"]["data"]
        assert sorted(r[0] for r in rows) == sorted(ids)  # every run is listed after a restart
        assert set(train.default_watch(studio)) <= set(ids)  # a new page reattaches to them
        deadline = time.time() + 150
        while {open_run(i, root).status()["state"] for i in ids} != {"done"}:
            assert time.time() < deadline, [open_run(i, root).status() for i in ids]
            time.sleep(0.5)
    finally:
        os.killpg(app.pid, signal.SIGKILL)
        app.wait()
    lora = open_run(ids[1], root)
    assert lora.status()["started"] >= open_run(ids[0], root).status()["finished"]


def test_the_poller_stops_when_asked_and_schedules_until_then(tmp_path, monkeypatch):
    jobs = Jobs(tmp_path, spawn=False)
    rounds = []
    monkeypatch.setattr(jobs, "schedule", lambda: rounds.append(time.monotonic()))
    jobs.start_poller(interval=0.05)
    time.sleep(0.3)
    jobs.stop_poller()
    assert len(rounds) >= 2 and not jobs._poller.thread.is_alive()
    done = len(rounds)
    time.sleep(0.2)
    assert len(rounds) == done  # no round after the stop
