"""`python -m qpa`: generated flags, counts, clean user errors, and a tiny end-to-end run."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qpa.cli.main import build_parser, main
from qpa.config import RunConfig, TrainConfig
from qpa.flags import config_to_argv
from qpa.runs.store import create_run, list_runs

ROOT = Path(__file__).resolve().parents[1]


def qpa(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m qpa ARGV`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "qpa", *argv], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=120,
    )  # fmt: skip


def exit_code(argv: list[str]) -> int:
    """`main(argv)` in this process; argparse's own errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """An empty runs root in $QPA_RUNS, and a private $QPA_HOME for caches."""
    monkeypatch.setenv("QPA_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    return tmp_path / "runs"


def test_count_prints_the_paper_numbers():
    out = qpa(
        "count", "--variant", "qpa", "--model", "gpt2-config", "--rank", "4", "--chunk-size",
        "2048", "--depth", "8",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for text in ("106,264", "204,100", "52.06%", "N = 7 qubits"):
        assert text in out.stdout
    counts, choices = out.stdout.split("\n\n")
    rows = counts.splitlines()[2:]
    ends = {re.search(r"  ([\d,]+)  ", row).end(1) for row in rows}
    assert len(rows) == 6 and len(ends) == 1  # the parameters column is right-aligned
    # and back from qubits to chunk sizes: 7 qubits hold 204,100 values in chunks of 2,048
    table = {int(r.split()[0]): r.split()[1] for r in choices.splitlines()[2:]}
    assert table[7] == "2,048" and table[8] == "1,024" and table[4] == "16,384"
    assert "← this shape" in choices.splitlines()[2 + list(table).index(7)]


def test_count_json(capsys):
    args = ["count", "--model", "gpt2-config", "--rank", "4", "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["lora"], data["qpa"], data["n_qubits"]) == (204100, 106152, 7)  # the default shape
    assert main([*args, "--variant", "qpa"]) == 0
    assert json.loads(capsys.readouterr().out)["qpa"] == 106264  # the paper's


def test_help_shows_field_help_text():
    out = qpa("train", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "--chunk-size N" in text and "Values the mapping MLP emits per basis state" in text
    assert "--cache-backbone, --no-cache-backbone" in text and "(default: on)" in text
    assert "{cosine,linear,constant}" in text
    assert qpa("--help").returncode == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--steps", "0"], "`steps` = 0 must be ≥ 1"),
        (["train", "--lr", "-1"], "`lr` = -1.0 must be ≥ 0"),
        (["train", "--schedule", "sometimes"], "invalid choice"),
        (["train", "--hidden-sizes", "3,a"], "invalid comma-separated int value"),
        (["train", "--config", "missing.json"], "No such file or directory: missing.json"),
        (["train", "--model", "gpt2-config"], "shape-only preset"),
        (["train", "--model", "tiny-llama", "--target-modules", "nope"], "`target_modules`"),
        (["train", "--corpus", "missing.txt"], "`corpus`"),
        (["train", "--name", "../x"], "`name` = '../x' is not a valid run id"),
        (["train", "--resume", "nope"], "`run` = 'nope' not found"),
        (["runs", "show", "../etc"], "`run` = '../etc' is not a valid run id"),
        (["export", "--run", "nope", "--out", "x"], "`run` = 'nope' not found"),
        (["chat", "--run", "nope", "--prompt", "hi"], "`run` = 'nope' not found"),
        (["chat", "--prompt", "hi", "--max-new-tokens", "0"], "`max_new_tokens`"),
        (["count", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_an_error_with_exit_2_and_nothing_written(runs, capsys, argv, message):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert "error: " in err and message in err and "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())


def test_user_errors_in_a_real_process_have_no_traceback(tmp_path):
    for argv in (["count", "--rank", "0"], ["count", "--entangler", "x"]):
        out = qpa(*argv, env={"QPA_RUNS": str(tmp_path)})
        assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr


def test_runs_table_empty_and_populated(runs, capsys):
    assert main(["runs"]) == 0
    assert "no runs" in capsys.readouterr().out
    run = create_run(RunConfig(train=TrainConfig(steps=10)), name="r1")
    run.set_status("running", pid=os.getpid(), step=4, trainable_params=106264)
    run.append_metrics({"step": 4, "split": "val", "loss": 1.0, "perplexity": 2.718})
    assert main(["runs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "id",
        "method",
        "model",
        "state",
        "step",
        "val",
        "ppl",
        "best",
        "base",
        "params",
        "time",
    ]
    assert table[1].split()[:9] == [
        "r1",
        "qpa-lora",
        "smollm2",
        "running",
        "4/10",
        "2.718",
        "–",  # not measured (yet): the one formatter's dash
        "–",
        "106,264",
    ]
    assert main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "r1"
    assert main(["runs", "show", "r1"]) == 0
    assert '"perplexity": 2.718' in capsys.readouterr().out
    assert main(["runs", "cancel", "r1"]) == 0 and run.stop_requested()
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(runs), "show", "r1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"]["step"] == 4
    assert main(["runs", "show", "r1", "--runs-dir", str(runs.parent)]) == 2  # not there


def test_flags_round_trip_through_argv():
    config = RunConfig.from_dict(
        {"adapter": {"rank": 8, "target_modules": ["q_proj", "v_proj"]},
         "qpa": {"hidden_sizes": [16, 16], "entangler": "ring"},
         "train": {"cache_backbone": False, "lr": 0.5}}
    )  # fmt: skip
    args = build_parser().parse_args(["train", *config_to_argv(config)])
    from qpa.flags import config_from_args

    assert config_from_args(args) == config


def test_config_file_then_flags_override(runs, tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(RunConfig.from_dict({"adapter": {"rank": 2}, "qpa": {"depth": 3}}).to_json())
    assert (
        main(["count", "--config", str(path), "--model", "gpt2-config", "--depth", "5", "--json"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["depth"] == 5 and data["lora"] == 2 * (768 + 50257)


@pytest.mark.chatterbot
def test_train_then_runs_eval_export_chat(runs, tmp_path, capsys):
    argv = ["train", "--model", "tiny-llama", "--steps", "3", "--batch-size", "4",
            "--max-examples", "40", "--eval-every", "2", "--name", "e2e"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err  # the phases, named as on the run card
    assert "loading the model and data" in err and "caching validation rows: " in err
    (run,) = list_runs()
    status = run.status()
    assert status["phase"] == "training" and status["rows"]["done"] == status["rows"]["total"]
    assert (run.id, status["state"], status["step"]) == ("e2e", "done", 3) and run.has_adapter()
    assert len(run.metrics("val")) >= 2 and run.metrics("train")[-1]["step"] == 3
    assert main(argv) == 2  # the name is taken; the finished run is untouched
    assert run.status()["state"] == "done"
    capsys.readouterr()

    assert main(["runs"]) == 0
    assert "e2e" in capsys.readouterr().out
    assert main(["eval", "--run", "e2e", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["perplexity"] > 1
    assert main(["export", "--run", "e2e", "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in run.adapter_dir.iterdir()
    )
    assert main(["export", "--run", "e2e", "--out", str(tmp_path / "out")]) == 2
    assert main(["export", "--run", "e2e", "--out", str(tmp_path / "merged"), "--merged"]) == 0
    assert (tmp_path / "merged" / "config.json").is_file()
    capsys.readouterr()

    assert main(["chat", "--run", "e2e", "--prompt", "hi", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.endswith("\n")
    assert main(["train", "--resume", "e2e"]) == 2  # done runs are not resumed
    assert "is done" in capsys.readouterr().err


def test_chat_with_a_run_without_adapter_is_an_error(runs, capsys):
    create_run(RunConfig(), name="fresh")
    assert main(["chat", "--run", "fresh", "--prompt", "hi"]) == 2
    assert "has no exported adapter" in capsys.readouterr().err


def test_chat_reads_stdin_in_a_loop(runs, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/reset\nagain\n"))
    assert main(["chat", "--model", "tiny-llama", "--max-new-tokens", "3", "--seed", "1"]) == 0
    assert "chatting with tiny-llama" in capsys.readouterr().err
