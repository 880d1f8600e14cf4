"""The fair comparison protocol end to end on tiny-llama: the lr grid on validation with one seed,
each variant's best rate, more seeds there, the test split reported, finished runs reused; its
table, chart and CLI; and bad input refused before anything is written."""

import json

import pytest
from tiny_run import TINY_RUN as BASE

from qpa.cli.main import main
from qpa.runs.store import list_runs, open_run
from qpa.studies.compare import load_result, plan_comparison, result_path, run_comparison
from qpa.studies.compare_report import comparison_table, frontier_svg
from qpa.studies.stats import welch_interval
from qpa.tool_config import CompareConfig

SETTINGS = CompareConfig(variants=("lora", "lora-r1", "qpa"), lr_grid=(3e-2, 1e-3), seeds=(0, 1))
TINY_FLAGS = ["--model", "tiny-llama", "--rank", "2", "--chunk-size", "64", "--depth", "2",
              "--topics", "ai", "--max-length", "48", "--max-examples", "24", "--steps", "2",
              "--eval-every", "2", "--batch-size", "4"]  # fmt: skip


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    plan = plan_comparison(BASE, SETTINGS, "t")
    announced = []
    result = run_comparison(plan, root, on_run=lambda run_id, i, n: announced.append(run_id))
    return root, plan, result, announced


def _result(root, run_id: str) -> dict:
    return open_run(run_id, root).status()["result"]


def test_each_variant_is_tuned_on_validation_then_reported_on_test(compared):
    root, plan, result, announced = compared
    assert plan.n_runs == len(announced) == 3 * 2 + 3 and len(list_runs(root)) == 9
    assert result["lr_grid"] == [1e-3, 3e-2] and result["metric"] == "replies"
    for row in result["rows"]:
        v = row["variant"]
        val = {lr: _result(root, f"t-{v}-lr{lr:g}-s0")["val_assistant_perplexity"]
               for lr in (1e-3, 3e-2)}  # fmt: skip
        assert row["val_by_lr"] == {f"{lr:g}": p for lr, p in val.items()}
        chosen = min(val, key=val.get)
        assert row["chosen_lr"] == chosen and row["edge"] == ("low" if chosen == 1e-3 else "high")
        other = 3e-2 if chosen == 1e-3 else 1e-3
        assert (root / f"t-{v}-lr{chosen:g}-s1").is_dir()  # the second seed: at the chosen rate
        assert not (root / f"t-{v}-lr{other:g}-s1").exists()
        finals = [_result(root, f"t-{v}-lr{chosen:g}-s{s}") for s in (0, 1)]
        assert row["test"] == [r["test_assistant_perplexity"] for r in finals]
        assert row["test"] != [r["val_assistant_perplexity"] for r in finals]
        assert row["test_mean"] == pytest.approx(sum(row["test"]) / 2)
    lora = next(r for r in result["rows"] if r["variant"] == "lora")
    qpa = next(r for r in result["rows"] if r["variant"] == "qpa")
    diff, lo, hi = welch_interval(qpa["test"], lora["test"])
    assert qpa["diff_pct_ci"] == pytest.approx([100 * lo / lora["test_mean"], 100 * hi / lora["test_mean"]])
    assert qpa["diff_pct"] == pytest.approx(100 * diff / lora["test_mean"])
    assert lora["diff_pct_ci"] is None and lora["share"] == 1.0
    assert next(r for r in result["rows"] if r["variant"] == "lora-r1")["share"] == 0.5
    assert load_result("t", root) == result  # saved beside the runs


def test_the_test_split_is_held_out_and_never_evaluated_while_training(compared):
    root, _, _, _ = compared
    run = open_run("t-qpa-lr0.001-s0", root)
    assert run.config.data.test_fraction == 0.1  # compare's default, since the base had none
    assert {m["split"] for m in run.metrics()} == {"train", "val"}
    assert "Infinity" not in (root / "t-qpa-lr0.001-s0" / "status.json").read_text()


def test_a_second_comparison_reuses_every_finished_run(compared):
    root, plan, result, _ = compared
    logs = {r.id: (r.path / "metrics.jsonl").read_text() for r in list_runs(root)}
    again = run_comparison(plan, root)
    assert {r.id: (r.path / "metrics.jsonl").read_text() for r in list_runs(root)} == logs
    assert again["rows"] == result["rows"]
    more = plan_comparison(BASE, SETTINGS.replace(seeds=(0, 1, 2)), "t")
    grown = run_comparison(more, root)
    assert len(list_runs(root)) == 9 + 3 and all(r["seeds"] == [0, 1, 2] for r in grown["rows"])


def test_table_and_chart_show_every_variant(compared):
    _, _, result, _ = compared
    table = comparison_table(result)
    assert table.count("\n") == 1 + 3 and "| lora | 582 | 100% |" in table
    assert "(2) | – |" in table and " [" in table  # the baseline has no CI, the others do
    svg = frontier_svg(result)
    assert svg.count("<rect x=") == 2 + 2 and svg.count("<circle") == 1  # LoRA squares, legend
    assert "<polyline" in svg  # LoRA's two ranks form a line


def test_cli_compare_dry_run_report_and_files(compared, tmp_path, capsys):
    root, _, result, _ = compared
    args = ["compare", *TINY_FLAGS, "--runs-dir", str(root), "--prefix", "t",
            "--variants", "lora,lora-r1,qpa", "--lr-grid", "1e-3,3e-2", "--seeds", "0,1"]  # fmt: skip
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "runs: 6 tuning + 3 more seeds = 9 (6 tuning runs already finished, reused)" in out
    md, svg = tmp_path / "t.md", tmp_path / "t.svg"
    assert main(["compare", "--report", "--prefix", "t", "--runs-dir", str(root),
                 "--markdown", str(md), "--svg", str(svg)]) == 0  # fmt: skip
    assert comparison_table(load_result("t", root)) in capsys.readouterr().out
    assert comparison_table(load_result("t", root)) in md.read_text()
    assert svg.read_text() == frontier_svg(load_result("t", root))
    assert main(["compare", "--report", "--prefix", "t", "--runs-dir", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][0]["variant"] == result["rows"][0]["variant"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr-grid", ""], "`lr_grid` = (empty) needs at least two"),
        (["--lr-grid", "1e-2"], "`lr_grid` = 0.01 needs at least two"),
        (["--lr-grid", "1e-2,0"], "`lr_grid` = 0.0 must be > 0"),
        (["--lr-grid", "1e-2,-1"], "`lr_grid` = -1.0 must be > 0"),
        (["--test-fraction", "0.5", "--val-fraction", "0.5"], "`test_fraction` = 0.5 with `val"),
        (["--max-examples", "3", "--test-fraction", "0.5"], "`test_fraction` = 0.5: 3 example"),
        (["--variants", "lora,qpa-nope"], "`variants` entry 'qpa-nope' is not one of"),
        (["--variants", "qpa"], "`baseline` = 'lora' is not among `variants`"),
        (["--seeds", ""], "`seeds` must list at least one seed"),
        (["--lr", "0.01"], "`lr`: compare picks them from `lr_grid`"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(tmp_path, capsys, flags, message):
    args = ["compare", *TINY_FLAGS, "--runs-dir", str(tmp_path / "runs"), *flags]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert not result_path("compare", tmp_path / "runs").exists()


def test_the_results_tab_shows_the_same_table_and_chart(compared):
    from app.handlers.results import comparison_view
    from app.state import Studio

    root, _, _, _ = compared
    studio = Studio.create(runs_root=root, demo=True)
    choices, text, svg = comparison_view(studio, None)
    result = load_result("t", root)
    assert choices["choices"] == ["t"] and choices["value"] == "t"
    assert comparison_table(result) in text and svg == frontier_svg(result)
    empty = Studio.create(runs_root=root / "none", demo=True)
    assert "No comparison saved yet" in comparison_view(empty, None)[1]


def test_runs_in_one_process_tokenize_a_built_in_corpus_once(tmp_path):
    from qpa.models.tiny_tokenizer import tiny_tokenizer
    from qpa.training.session import load_splits

    tok = tiny_tokenizer()
    data = BASE.data.replace(test_fraction=0.1)
    assert load_splits(data, tok) is load_splits(data, tiny_tokenizer())
    assert load_splits(data.replace(split_seed=1), tok) is not load_splits(data, tok)
    path = tmp_path / "c.txt"
    path.write_text("one two\n\nthree four\n\nfive six\n\nseven")
    upload = data.replace(corpus=str(path), topics=())
    assert load_splits(upload, tok) is not load_splits(upload, tok)  # files may change: read again


def test_a_stopped_comparison_stops_and_resumes_from_the_checkpoint(tmp_path):
    plan = plan_comparison(BASE, SETTINGS.replace(variants=("lora",), seeds=(0,)), "s")
    current = {}

    def stop_after_one_step(event):
        if event["event"] == "step":
            open_run(current["id"], tmp_path).request_stop()

    with pytest.raises(KeyboardInterrupt, match="s-lora-lr0.001-s0 was stopped"):
        run_comparison(plan, tmp_path, lambda run_id, i, n: current.update(id=run_id),
                       [stop_after_one_step])  # fmt: skip
    assert open_run("s-lora-lr0.001-s0", tmp_path).status()["state"] == "cancelled"
    assert not result_path("s", tmp_path).exists()
    result = run_comparison(plan, tmp_path)
    run = open_run("s-lora-lr0.001-s0", tmp_path)
    assert run.status()["state"] == "done" and run.status()["step"] == BASE.train.steps
    assert [m["step"] for m in run.metrics("train")] == [1, 2]  # resumed, not restarted
    assert result["rows"][0]["seeds"] == [0]
