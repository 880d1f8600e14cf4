"""The Results tab's handlers on real finished runs: seeds grouped into points with error bars,
the assistant-token switch, shots and noise against perplexity, and the variance explorer."""

import pytest

pytest.importorskip("gradio", reason="the app tests need gradio (requirements.txt)")

import statistics

import gradio as gr
from tiny_run import TINY_RUN as BASE

from app.handlers import results
from app.state import Studio
from qpa.config import RunConfig
from qpa.runs.store import list_runs
from qpa.studies.results import label, run_record
from qpa.studies.sweep import run_one
from qpa.studies.variance import fit_decay, gradient_variance


def config(seed=0, method="qpa-lora", **qpa) -> RunConfig:
    return BASE.replace(
        adapter=BASE.adapter.replace(method=method),
        qpa=BASE.qpa.replace(**qpa),
        train=BASE.train.replace(seed=seed),
    ).resolved()


QPA, LORA = label(config()), label(config(method="lora"))  # e.g. "qpa-lora chunk_size=64 …"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """Seven tiny finished runs: LoRA and QPA over two seeds, QPA at 64 and 512 shots and under
    noise, trained in this process."""
    studio = Studio.create(runs_root=tmp_path_factory.mktemp("runs"), demo=True)
    plan = {
        "lora-s0": config(0, "lora"), "lora-s1": config(1, "lora"),
        "qpa-s0": config(0), "qpa-s1": config(1),
        "shots64": config(shots=64), "shots512": config(shots=512), "noise": config(noise=0.05),
    }  # fmt: skip
    for run_id, run_config in plan.items():
        run_one(run_id, run_config, studio.root)
    return studio


def records(studio):
    return {r["id"]: r for r in map(run_record, list_runs(studio.root))}


@pytest.mark.chatterbot
def test_params_chart_groups_seeds_with_error_bars(studio):
    params, table, _ = results.on_refresh(studio, "all tokens")
    by_name = {t.meta: t for t in params.data if t.meta}  # full labels; legends drop shared parts
    others = {label(config(shots=64)), label(config(shots=512)), label(config(noise=0.05))}
    assert set(by_name) == {LORA, QPA, *others} and "shots=64" in label(config(shots=64))
    r = records(studio)
    seeds = [r["qpa-s0"]["perplexity"], r["qpa-s1"]["perplexity"]]
    qpa = by_name[QPA]
    assert (qpa.x[0], by_name[LORA].x[0]) == (r["qpa-s0"]["params"], r["lora-s0"]["params"])
    assert qpa.y[0] == pytest.approx(statistics.fmean(seeds))
    assert qpa.error_y.array[0] == pytest.approx(statistics.stdev(seeds))
    share = r["qpa-s0"]["params"] / r["lora-s0"]["params"]
    assert f"{share:.2%} of LoRA's parameters" in qpa.hovertemplate
    assert "2 seeds (0, 1)" in qpa.hovertemplate and by_name[LORA].marker.symbol == "square"
    assert f"| {QPA} |" in table and table.count("\n") == 8  # header, rule, five groups, note
    base = [t for t in params.data if t.name == "base model"]  # one data selection: one level
    assert len(base) == 1 and base[0].y[0] == pytest.approx(r["qpa-s0"]["base_perplexity"])


@pytest.mark.chatterbot
def test_assistant_switch_plots_assistant_token_perplexity(studio):
    params, _, shots = results.on_refresh(studio, "assistant tokens")
    lora = next(t for t in params.data if t.meta == LORA)
    r = records(studio)
    assistant = [r["lora-s0"]["assistant_perplexity"], r["lora-s1"]["assistant_perplexity"]]
    assert lora.y[0] == pytest.approx(statistics.fmean(assistant))
    assert lora.y[0] != pytest.approx(statistics.fmean([r["lora-s0"]["perplexity"],
                                                        r["lora-s1"]["perplexity"]]))  # fmt: skip
    assert "assistant tokens" in params.layout.yaxis.title.text
    assert "assistant tokens" in shots.layout.yaxis.title.text


@pytest.mark.chatterbot
def test_shots_chart_draws_sampled_runs_against_the_exact_level_and_noise(studio):
    _, _, figure = results.on_refresh(studio, "all tokens")
    r = records(studio)
    assert figure.layout.legend.title.text == f"all runs: {QPA.split(' ', 1)[1]}"
    sampled = next(t for t in figure.data if t.name == "qpa-lora")  # one shape: its settings shared
    assert list(sampled.x) == [64, 512]
    assert list(sampled.y) == [r["shots64"]["perplexity"], r["shots512"]["perplexity"]]
    exact = next(t for t in figure.data if t.name == "qpa-lora, exact")
    assert list(exact.x) == [64, 512] and exact.line.dash == "dash"
    assert exact.y[0] == pytest.approx(statistics.fmean([r["qpa-s0"]["perplexity"],
                                                         r["qpa-s1"]["perplexity"]]))  # fmt: skip
    noise = next(t for t in figure.data if t.xaxis == "x2")
    assert noise.name == "qpa-lora against noise" and list(noise.x) == [0.0, 0.05]
    assert noise.y[1] == r["noise"]["perplexity"]


def test_no_finished_runs_says_how_to_get_some(tmp_path):
    empty = Studio.create(runs_root=tmp_path / "runs")
    params, table, shots = results.on_refresh(empty, "all tokens")
    assert table == "*No finished runs yet.*" and not params.data and not shots.data
    assert "python -m qpa sweep" in params.layout.annotations[0].text
    assert "--shots" in shots.layout.annotations[0].text


@pytest.mark.chatterbot
def test_variance_explorer_plots_the_engines_variances_and_fit(studio):
    figure, note = results.on_variance(studio, "2,4,6", "8, 2", "global", 60)
    expected = gradient_variance([2, 4, 6], [2, 8], 60, "global")
    by_depth = {trace.name.split(" (")[0]: trace for trace in figure.data}
    assert set(by_depth) == {"L = 2", "L = 8"} and figure.layout.yaxis.type == "log"
    deep = [row["variance"] for row in expected if row["depth"] == 8]
    assert list(by_depth["L = 8"].x) == [2, 4, 6] and list(by_depth["L = 8"].y) == deep
    assert deep[0] > deep[1] > deep[2]  # the global cost's plateau: variance falls with N
    factor = next(f for f in fit_decay(expected) if f["depth"] == 8)["factor_per_qubit"]
    assert f"×{factor:.2f} per qubit" in by_depth["L = 8"].name
    assert note.startswith("6 points in") and f"L = 8: ×{factor:.3f}" in note


@pytest.mark.parametrize(
    "args, message",
    [
        (("2,4,6,8,10,12,14,16", "64,128", "local", 2000), "above this studio's cap"),
        (("2,x", "2", "local", 50), "`qubits`"),
        (("2,17", "2", "local", 50), "in 1…16"),
        (("2", "2", "nope", 50), "`cost` = 'nope'"),
    ],
)
@pytest.mark.chatterbot
def test_variance_explorer_refuses_bad_or_too_big_grids(studio, args, message):
    with pytest.raises(gr.Error) as error:  # the page and API callers see it; nothing changes
        results.on_variance(studio, *args)
    assert message in error.value.message
