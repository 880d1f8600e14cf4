"""Training in 2 processes, without a GPU: `accelerate launch --multi_gpu --num_processes 2 -m qpa
train … --device cpu` (torchrun underneath, DDP over gloo), on a tiny model.

What must hold: the loss curve is one process's at the same global batch (to 1e-5); every rank
generates the same weights, also with the random pairing (each run checks it at every
evaluation and logs it); rank 0 alone writes the run folder; a cancel stops every rank after the
same step, and the run resumes from its checkpoint in 2 processes. Then the refusals: a process
count without a launcher, a global batch smaller than the processes, FSDP on the CPU, and
accelerate's own mixed precision.
"""

import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qpa.cli.main import main
from qpa.config import AdapterConfig, DataConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig
from qpa.runs.store import create_run, open_run
from qpa.training.distributed import World, fingerprint, shard_order
from qpa.training.launch import check_launch
from qpa.training.loop import train
from qpa.training.session import prepare

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "accelerate"


def tiny(steps: int = 6, pairing: str = "matched", eval_every: int = 3) -> RunConfig:
    return RunConfig(
        model=ModelConfig(model="tiny-llama"),
        adapter=AdapterConfig(rank=2),
        qpa=QPAConfig(chunk_size=64, depth=2, pairing=pairing),
        data=DataConfig(topics=("ai",), max_length=48, max_examples=40),
        train=TrainConfig(steps=steps, eval_every=eval_every, batch_size=8, device="cpu"),
    ).resolved()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private runs root and QPA_HOME, for this process and the launched ones."""
    monkeypatch.setenv("QPA_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    for name in ("WORLD_SIZE", "RANK", "ACCELERATE_USE_FSDP", "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args: str) -> subprocess.Popen:
    """`accelerate launch` of 2 CPU processes (the repo's cpu-2proc.yaml) running
    `python -m qpa ARGS`."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(CONFIGS / "cpu-2proc.yaml"), "--main_process_port", str(free_port()),
               "-m", "qpa", *args]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 120) -> str:
    out, _ = process.communicate(timeout=timeout)
    return out


def curve(run) -> list[tuple[str, int, float]]:
    return [(m["split"], m["step"], m["loss"]) for m in run.metrics()]


def agreements(run) -> list[int]:
    """The steps at which the run logged that its processes held identical tensors."""
    pattern = r"2 processes agree at step (\d+): trainable tensors and the weights generated"
    return [int(s) for s in re.findall(pattern, run.log_text(1000))]


@pytest.mark.chatterbot
def test_two_processes_train_like_one_at_the_same_global_batch(env):
    config = tiny()
    single = create_run(config, None, "one")
    train(config, single)
    (env / "config.json").write_text(config.to_json())
    out = finish(launch("train", "--config", str(env / "config.json"), "--name", "two"))
    assert sorted(p.name for p in (env / "runs").iterdir()) == ["one", "two"], out
    two = open_run("two")
    assert two.status()["state"] == "done", out
    assert two.status()["result"]["processes"] == 2
    one_curve, two_curve = curve(single), curve(two)
    assert [c[:2] for c in two_curve] == [c[:2] for c in one_curve]  # each record once: rank 0's
    assert len(one_curve) == 9  # 6 steps and 3 evaluations
    for (_, _, a), (_, _, b) in zip(one_curve, two_curve, strict=True):
        assert abs(a - b) < 1e-5
    assert agreements(two) == [0, 3, 6]
    assert two.log_text(1000).count("adapter exported") == 1
    assert two.has_adapter() and two.has_state()
    assert out.count("run two: done, step 6/6") == 1  # rank 0 alone prints


@pytest.mark.chatterbot
def test_a_cancel_stops_every_rank_and_the_run_resumes_in_two_processes(env):
    """With the random pairing: every rank draws the same bit strings (checked in the run)."""
    config = tiny(steps=150, pairing="random", eval_every=75)
    (env / "config.json").write_text(config.to_json())
    process = launch("train", "--config", str(env / "config.json"), "--name", "long")
    metrics = env / "runs" / "long" / "metrics.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and '"split": "train"' not in _read(metrics):
        assert process.poll() is None, finish(process)
        time.sleep(0.05)
    open_run("long").cancel()
    out = finish(process)
    run = open_run("long")
    status, (_, meta) = run.status(), run.load_state()
    assert status["state"] == "cancelled", out
    assert 0 < status["step"] < 150 and meta["step"] == status["step"]
    checked = agreements(run)  # at the start, and at the cancel's evaluation (and any between)
    assert checked[0] == 0 and checked[-1] == status["step"]
    out = finish(launch("train", "--resume", "long"))
    status = open_run("long").status()
    assert status["state"] == "done" and status["step"] == 150, out
    assert agreements(open_run("long"))[-2:] == [75, 150]
    steps = [m["step"] for m in open_run("long").metrics("train")]
    assert steps == list(range(1, 151))  # every step once: none lost or doubled by the resume


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@pytest.mark.chatterbot
def test_the_fingerprint_tells_generated_weights_apart():
    session = prepare(tiny())
    assert isinstance(session.world, World) and session.world.size == 1
    generated = [t.detach().clone() for t in session.tuner.written()]
    before = fingerprint(session, generated)
    assert fingerprint(session, generated) == before != fingerprint(session)
    generated[0][0, 0] += 1e-3  # one generated value differs: what a diverged rank would hold
    assert fingerprint(session, generated) != before
    with torch.no_grad():
        session.trainable()[0][1].add_(1e-3)  # and so does a trainable tensor
    assert fingerprint(session) != fingerprint(prepare(tiny()))


@pytest.mark.parametrize("size", [2, 3])
def test_ranks_share_every_batch_and_their_rows_cover_the_split_once(size):
    order = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    for whole, batch in ((False, 8), (True, 32), (True, 4)):
        parts = [shard_order(order, batch, rank, size, whole) for rank in range(size)]
        assert sorted(torch.cat(parts).tolist()) == list(range(23))  # each row on one rank
    first_batch = order[:8]  # training: rank r takes every size-th example of the global batch
    assert shard_order(order, 8, 1, size, False)[: len(first_batch[1::size])].tolist() == (
        first_batch[1::size].tolist()
    )


def test_a_process_count_needs_a_launcher(env, capsys):
    argv = ["train", "--model", "tiny-llama", "--processes", "2", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "`processes` = 2" in err and "accelerate launch --multi_gpu --num_processes 2" in err
    assert not (env / "runs").exists()


def test_launch_refusals_name_the_fix(monkeypatch):
    cpu, cuda = SimpleNamespace(type="cpu"), SimpleNamespace(type="cuda")
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ValueError, match=r"`batch_size` = 2 is the global batch.*≥ 4"):
        check_launch(0, cpu, batch_size=2)
    with pytest.raises(ValueError, match="`processes` = 2, but the launcher started 4"):
        check_launch(2, cpu, batch_size=8)
    check_launch(4, cpu, batch_size=8)  # as launched
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ValueError, match="FSDP .* across CUDA GPUs; this run's device is cpu"):
        check_launch(0, cpu, batch_size=8)
    with pytest.raises(ValueError, match="FSDP .* not supported yet"):
        check_launch(0, cuda, batch_size=8)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with pytest.raises(ValueError, match="set it with `--precision` instead"):
        check_launch(0, cuda, batch_size=8)


def test_the_shipped_accelerate_configs_load_as_accelerate_reads_them():
    from accelerate.commands.config.config_args import load_config_from_file

    configs = {p.stem: load_config_from_file(str(p)) for p in CONFIGS.glob("*.yaml")}
    assert set(configs) == {"cpu-2proc", "ddp-2gpu", "multi-node"}
    for name, c in configs.items():
        assert c.distributed_type == "MULTI_GPU" and c.mixed_precision == "no", name
    assert (configs["multi-node"].num_machines, configs["multi-node"].num_processes) == (2, 16)
    assert configs["ddp-2gpu"].num_processes == configs["cpu-2proc"].num_processes == 2
