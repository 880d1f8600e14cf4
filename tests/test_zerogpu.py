"""ZeroGPU: the Start handler trains a launch inside its request, one GPU call per chunk of
steps, and the result equals an uninterrupted run; ZeroGPU's refusals read in plain words.

A fake `spaces` module stands in for the real one: its ``GPU`` decorator computes each call's
duration with the callable it was given (as ZeroGPU does, from the call's arguments) and runs
the function either in this process (the real package's behaviour off ZeroGPU) or, like ZeroGPU,
in a forked process with its arguments and result pickled, so nothing may rely on state the
GPU call leaves behind in memory. The error strings are those of `spaces` 0.51.3
(``spaces/zero/client.py``, ``wrappers.py``) and, for older wordings, ones users reported.
"""

import faulthandler
import multiprocessing
import pickle
import sys
import types
import warnings

import pytest
import torch
from tiny_run import tiny_form

gr = pytest.importorskip("gradio")

from app.handlers import data, train, zerogpu  # noqa: E402
from app.state import Studio  # noqa: E402
from qpa.cli.main import main  # noqa: E402
from qpa.hub.gpu_plan import ASSUMED_STEP_S, QUOTA_DOCS, plan_gpu  # noqa: E402
from qpa.hub.zerogpu import call_duration, chunks, gpu_chunk, on_zerogpu, run_chunk  # noqa: E402
from qpa.hub.zerogpu_errors import explain_zerogpu_error  # noqa: E402
from qpa.runs.store import create_run, list_runs, open_run  # noqa: E402
from qpa.training.estimate import record  # noqa: E402
from qpa.training.loop import train as train_run  # noqa: E402

ZERO_ENV = {"SPACE_ID": "me/qpa", "SPACES_ZERO_GPU": "true", "QPA_SPACES_DATA": "/no-storage"}
FORK_TIMEOUT_S = 120  # a GPU call here trains 2 steps of a tiny model
QUOTA = (
    "You have exceeded your free ZeroGPU quota (57s requested vs. 12s left). Try again in 0:09:48. "
)


class FakeSpaces(types.ModuleType):
    """`spaces` as seen by the studio: ``GPU(duration=callable)`` registers a function; each call
    asks the callable for its duration, then runs in this process or in a forked one, or
    raises ZeroGPU's error `fail` on call number `fail_on`."""

    def __init__(self, fork: bool = False, fail_on: int = 0, fail: gr.Error | None = None):
        super().__init__("spaces")
        self.fork, self.fail_on, self.fail = fork, fail_on, fail
        self.registered, self.durations = [], []

    def GPU(self, task=None, *, duration=None, size=None):  # noqa: N802 - the real name
        def decorate(fn):
            self.registered.append((fn, duration))

            def call(*args, **kwargs):
                self.durations.append(duration(*args, **kwargs) if callable(duration) else duration)
                if len(self.durations) == self.fail_on:
                    raise self.fail
                return in_fork(fn, args, kwargs) if self.fork else fn(*args, **kwargs)

            return call

        return decorate(task) if callable(task) else decorate


def in_fork(fn, args, kwargs):
    """`fn(*args, **kwargs)` in a forked process, arguments and result pickled, as ZeroGPU does.
    A child that hangs prints its threads' stacks and exits; the parent never waits on it."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child(payload: bytes) -> None:
        faulthandler.dump_traceback_later(FORK_TIMEOUT_S, exit=True)
        a, kw = pickle.loads(payload)
        send.send(pickle.dumps(fn(*a, **kw)))

    process = ctx.Process(target=child, args=(pickle.dumps((args, kwargs)),), daemon=True)
    process.start()
    ready = receive.poll(FORK_TIMEOUT_S + 10)
    process.join(10)
    if process.exitcode is None:
        process.kill()
        process.join()
    assert ready and process.exitcode == 0, f"GPU call failed in its process ({process.exitcode})"
    return pickle.loads(receive.recv())


@pytest.fixture
def zero(tmp_path, monkeypatch):
    """A ZeroGPU Space (the fake `spaces` installed), a private QPA_HOME whose measured pace
    (20 s a step) makes the plan train 2 steps per GPU call, and a corpus file."""
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    record("tiny-llama", {"step_s_per_example": {"qpa-lora": 5.0, "lora": 5.0}})  # batch 4
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n\n".join(f"Line {i} of a corpus about qubits and gates." for i in range(60))
    )

    def install(**kw) -> tuple[Studio, FakeSpaces]:
        """The fake `spaces` (`FakeSpaces` options), then the studio that finds it."""
        fake = FakeSpaces(**kw)
        monkeypatch.setitem(sys.modules, "spaces", fake)
        return Studio.create(runs_root=tmp_path / "runs", demo=False, env=ZERO_ENV), fake

    return install, tiny_form(steps=6, eval_every=2, source=data.SOURCES[1], upload=str(corpus),
                              topics=[])  # fmt: skip


def start(studio: Studio, form: dict) -> list:
    """Press Start: the handler the Train tab wires, driven to its end; returns what it yielded."""
    handler = zerogpu.launch_handler(studio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gr.Info and gr.Warning outside a browser request
        return list(handler(form))


def metrics(run) -> dict:
    """What a run measured: train losses per step, validation perplexities per step, the
    exported adapter's perplexity."""
    return {
        "train": [(m["step"], m["loss"]) for m in run.metrics("train")],
        "val": [(m["step"], m["perplexity"]) for m in run.metrics("val")],
        "exported": run.status()["result"]["val_perplexity"],
    }


def assert_same(got: dict, expected: dict) -> None:
    """Equal up to float32 summation order: a forked GPU call trains on one CPU thread."""
    for key in ("train", "val"):
        assert [s for s, _ in got[key]] == [s for s, _ in expected[key]]
        torch.testing.assert_close(torch.tensor([v for _, v in got[key]]),
                                   torch.tensor([v for _, v in expected[key]]), atol=1e-6, rtol=1e-6)  # fmt: skip
    assert abs(got["exported"] - expected["exported"]) < 1e-6 * expected["exported"]


@pytest.mark.parametrize("fork", [False, True], ids=["pass-through", "forked"])
def test_start_trains_in_gpu_calls_and_equals_one_uninterrupted_run(zero, fork):
    install, form = zero
    studio, fake = install(fork=fork)
    assert studio.settings.zerogpu and not studio.jobs.spawn
    plan = plan_gpu(train.build_configs(studio, form)[0])  # before the run measures its pace
    outputs = start(studio, form)
    assert fake.registered[0] == (run_chunk, call_duration)  # registered before the launch
    (run_id,) = outputs[0]["watch"]["value"]
    run = open_run(run_id, studio.root)
    assert run.status()["state"] == "done" and run.has_adapter()
    assert len(fake.durations) == 3 and len(outputs) == 1 + 3  # 2 + 2 + 2 steps, one yield a call
    assert plan.chunk_steps == 2 and fake.durations == plan.call_seconds()
    assert not (studio.root / ".jobs" / f"{run_id}.log").exists()  # no background process
    whole = create_run(run.config, studio.root.parent / "reference", name="whole")
    train_run(run.config, whole)
    assert_same(metrics(run), metrics(whole))
    tensors = [r.load_state()[0] for r in (run, whole)]  # angles, MLP and optimizer state
    for key, value in tensors[1].items():
        torch.testing.assert_close(tensors[0][key], value, atol=1e-6, rtol=0)


def test_a_quota_refusal_stops_the_launch_in_plain_words_and_the_run_resumes(zero):
    install, form = zero
    fail = gr.Error(QUOTA, title="ZeroGPU quota exceeded")
    studio, _ = install(fail_on=2, fail=fail)
    form = {**form, "plan": "QPA + matched LoRA baseline"}
    with pytest.raises(gr.Error) as refused:
        start(studio, form)
    message = refused.value.message
    assert "quota is used up for now: the next GPU call needs 57 s and 12 s are left" in message
    assert "Try again in 9 min 48 s" in message and "keeps its last checkpoint" in message
    runs = {r.config.adapter.method: r for r in list_runs(studio.root)}
    qpa, lora = runs["qpa-lora"], runs["lora"]
    status = qpa.status()
    assert status["state"] == "cancelled" and status["step"] == 2 and "quota" in status["error"]
    assert lora.status()["state"] == "cancelled"  # never started
    root = str(studio.root)
    assert main(["train", "--resume", qpa.id, "--runs-dir", root]) == 0  # the existing resume
    whole = create_run(qpa.config, studio.root.parent / "reference", name="whole")
    train_run(qpa.config, whole)
    assert_same(metrics(qpa), metrics(whole))


@pytest.mark.parametrize(
    "title, message, expected",
    [("ZeroGPU worker error", "GPU task aborted", "cut short before it finished"),
     ("ZeroGPU illegal duration", "The requested GPU duration (400s) is larger than the maximum "
      "allowed", "refused a GPU call of 400 s")],
)  # fmt: skip
def test_a_refused_first_call_leaves_the_run_failed_saying_why(zero, title, message, expected):
    install, form = zero
    studio, fake = install(fail_on=1, fail=gr.Error(message, title=title))
    with pytest.raises(gr.Error) as refused:
        start(studio, form)
    assert expected in refused.value.message and refused.value.title == "Training stopped"
    (run,) = list_runs(studio.root)
    status = run.status()
    assert status["state"] == "failed" and expected in status["error"]  # no checkpoint yet
    assert len(fake.durations) == 1


def test_a_stop_between_gpu_calls_makes_no_further_call(zero):
    install, form = zero
    studio, _ = install()
    run = create_run(train.build_configs(studio, form)[0], studio.root, name="stopped")
    calls = []

    def gpu(*args):
        calls.append(args[2])
        summary = run_chunk(*args)
        run.request_stop()  # the Stop button, while the call ran
        return summary

    events = list(chunks(run.config, run, 2, 60, gpu=gpu))
    assert calls == [2] and [e["step"] for e in events] == [2]
    assert run.status()["state"] == "cancelled"


def test_off_zerogpu_start_launches_background_jobs(tmp_path):
    studio = Studio.create(runs_root=tmp_path, demo=False, env={})
    assert not studio.settings.zerogpu and studio.jobs.spawn
    assert zerogpu.launch_handler(studio).func is train.on_launch
    assert "Each run is a background process" in zerogpu.launch_note(studio)
    assert not on_zerogpu({"SPACES_ZERO_GPU": "false"}) and not on_zerogpu({})


def test_the_real_spaces_decorator_is_a_pass_through_off_zerogpu(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    spaces = pytest.importorskip("spaces")  # requirements-dev.txt
    assert spaces.GPU(duration=call_duration)(run_chunk) is run_chunk
    assert gpu_chunk() is run_chunk


def test_the_estimate_before_start_gives_gpu_seconds_and_the_quota(zero):
    install, form = zero
    studio, _ = install()
    text = train.on_estimate(studio, form)
    assert text.startswith("ZeroGPU estimate: about **") and "GPU call(s)" in text
    assert "earlier runs on this Space measured" in text and QUOTA_DOCS in text
    plan = plan_gpu(train.build_configs(studio, form)[0])
    assert f"**{plan.gpu_s} GPU seconds** in {plan.calls} GPU call(s)" in text


def test_the_plan_assumes_a_pace_until_one_is_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("QPA_HOME", str(tmp_path))
    from tiny_run import TINY_RUN

    config = TINY_RUN.replace(train=TINY_RUN.train.replace(steps=300, eval_every=20))
    plan = plan_gpu(config)
    assert not plan.measured and plan.step_s == ASSUMED_STEP_S
    assert plan.chunk_steps == 40 and plan.calls == 8  # ends on validation steps
    assert max(plan.call_seconds()) <= 120 and sum(plan.call_seconds()) > plan.gpu_s


# -- ZeroGPU's errors in plain words ---------------------------------------------------------------

ERRORS = [
    ("ZeroGPU quota exceeded", QUOTA, "needs 57 s and 12 s are left. Try again in 9 min 48 s"),
    ("ZeroGPU quota exceeded", "You have exceeded your Pro ZeroGPU quota (300s requested vs. 286s "
     "left). Try again in 1 day, 2:00:00. Add credits to keep using ZeroGPU.",
     "needs 300 s and 286 s are left. Try again in 1 day 2 h"),
    ("", "You have exceeded your GPU quota (60s requested vs. 56s left). <a style=\"white-space: "
     "nowrap\" href=\"https://huggingface.co/join\">Create a free account</a> to get more usage "
     "quota.", "needs 60 s and 56 s are left. Try again later"),
    ("", "You have exceeded your GPU quota (46s left vs. 60s requested). Sign-up on Hugging Face "
     "to get more quotas or retry in 0:09:48.", "needs 60 s and 46 s are left. Try again in 9 min 48 s"),
    ("ZeroGPU quota exceeded", "You have exceeded your ZeroGPU runs limit. ", "limit of GPU calls"),
    ("ZeroGPU quota exceeded", "Space app has reached its GPU limit. Try re-running outside of "
     "examples if it happened after clicking one", "visitors who are not logged in"),
    ("ZeroGPU quota exceeded", "No GPU was available after 60s. Try re-running outside of "
     "examples if it happened after clicking one", "Every ZeroGPU GPU is busy"),
    ("ZeroGPU queue timeout", "No GPU was available after 60s Retry later", "Every ZeroGPU GPU is busy"),
    ("ZeroGPU client error", "No GPU was available", "Every ZeroGPU GPU is busy"),
    ("ZeroGPU illegal duration", "The requested GPU duration (400s) is larger than the maximum "
     "allowed", "refused a GPU call of 400 s"),
    ("ZeroGPU worker error", "GPU task aborted", "cut short before it finished"),
    ("ZeroGPU worker error", "OutOfMemoryError", "Training failed on the GPU (OutOfMemoryError)"),
    ("ZeroGPU client error", "Expired ZeroGPU proxy token", "reload the page"),
    ("ZeroGPU pending credits exceeded", "You have too many ZeroGPU credits allocated to running "
     "tasks. Try again once some of those tasks have completed.", "held by tasks still running"),
]  # fmt: skip


@pytest.mark.parametrize("title, message, expected", ERRORS)
def test_zerogpu_errors_read_in_plain_words(title, message, expected):
    plain = explain_zerogpu_error(message, title)
    assert plain is not None and expected in plain
    assert "<a" not in plain and "ZeroGPU worker error" not in plain


def test_other_errors_are_not_zerogpus():
    assert explain_zerogpu_error("`steps` = 0 must be at least 1", "Error") is None
    assert explain_zerogpu_error("CUDA out of memory") is None
