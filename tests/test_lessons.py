"""Teaching with the studio: shareable links and lesson mode, the plain-language panels, QPA
flagged where it has more parameters than LoRA, and the rough edges a class would hit first
(each test here failed before its fix)."""

import re
import warnings
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

pytest.importorskip("gradio")

import gradio as gr  # noqa: E402
from tiny_run import TINY_RUN  # noqa: E402

from app import plots, result_plots  # noqa: E402
from app.handlers import design, links, progress, results, runs, train  # noqa: E402
from app.state import Studio  # noqa: E402
from app.tabs import design as design_tab  # noqa: E402
from app.tabs import share  # noqa: E402
from app.tabs import train as train_tab  # noqa: E402
from qpa import create_run  # noqa: E402

PAPER = {"hidden_sizes": "32,64,128,128,64,32,32", "entangler": "ladder", "activation": "none",
         "fourier_features": 0}  # the paper's MLP (variant `qpa`)
OVER = {"model": "smollm2", "target_modules": ["lm_head"], "rank": 2, "chunk_size": 4096,
        "n_qubits": 0, "depth": 4, **PAPER}  # the case: QPA 174.70% of LoRA
FULL = Studio.create(runs_root="unused-runs", demo=False)


def warned(fn, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


@pytest.fixture(scope="module")
def page_fields(tmp_path_factory):
    """The Design and Train components as the studio builds them, with the link specs."""
    studio = Studio.create(runs_root=tmp_path_factory.mktemp("runs"), demo=False)
    with gr.Blocks():
        fields, _ = design_tab.build(studio)
        fields.update(train_tab.build(studio, fields)["fields"])
    specs = {name: share.spec_of(name, fields[name]) for name in share.LINKED}
    return fields, specs


# -- links and lessons ----------------------------------------------------------------------------


def test_every_design_and_train_setting_round_trips_through_a_link(page_fields):
    fields, specs = page_fields
    changed = {"model": "tiny-llama", "target_modules": ["lm_head", "q_proj"], "rank": 8,
               "chunk_size": 512, "n_qubits": 9, "depth": 3, "hidden_sizes": "16,16",
               "entangler": "ring", "activation": "tanh", "fourier_features": 4, "start": "offset",
               "layers": "per-layer", "use_dora": True, "dora_magnitude": "generated",
               "dora_norm": "differentiated", "shots": 1000, "noise": 0.01, "plan": "QPA only",
               "steps": 7, "batch_size": 2, "lr": 0.005, "eval_every": 3, "max_length": 32,
               "max_examples": 20, "seed": 4, "loss_on": "all", "perplexity": "paper",
               "source": "uploaded file", "topics": ["ai", "science"], "patience": 9}  # fmt: skip
    assert set(changed) == set(share.LINKED)  # every field of the page but the upload
    assert [k for k, v in changed.items() if specs[k].default == v] == []  # each one changes
    text = links.query(changed, specs, tab="train", lock=["rank", "chunk_size"], hide=["results"])
    link = links.parse(dict(parse_qsl(text)), specs)
    assert link.values == changed and not link.notices
    assert (link.tab, link.lock, link.hide) == ("train", ("rank", "chunk_size"), ("results",))
    assert links.query({k: specs[k].default for k in specs}, specs) == ""  # defaults: a bare URL


def test_bad_link_parameters_are_ignored_with_one_notice_naming_each(page_fields):
    _, specs = page_fields
    params = {"rank": "0", "depth": "x", "entangler": "star", "topics": "ai,nope", "tab": "lab",
              "lock": "rank,colour", "bogus": "1", "chunk_size": "1024"}  # fmt: skip
    link = links.parse(params, specs, variants=("qpa",))
    assert link.values == {"chunk_size": 1024} and link.lock == ("rank",) and link.tab == ""
    text = links.notice(link.notices)
    for part in ("`rank` = 0 is outside 1…1024", "`depth` = 'x' is not a number", "'star'",
                 "unknown entries: nope", "`tab` = 'lab'", "colour", "`bogus`"):  # fmt: skip
        assert part in text, text


def test_opening_a_lesson_link_sets_locks_and_pins_the_preset(page_fields):
    fields, specs = page_fields
    params = {"preset": "qpa-shallow-gelu", "rank": "2", "lock": "rank", "tab": "design"}
    updates, messages = warned(share.open_link, params, specs, fields)
    assert updates["rank"] == {"__type__": "update", "value": 2, "interactive": False}
    assert updates["activation"]["value"] == "gelu" and updates["hidden_sizes"]["value"] == "64,48"
    assert updates["n_qubits"]["value"] == 1  # the redraw raises it to the fewest that fit
    assert updates["variant"] == {"__type__": "update", "interactive": False}  # the box is pinned
    assert updates["pinned"] == "qpa-shallow-gelu" and updates["shaped"] is True and not messages
    plain = share.open_link({"tab": "train"}, specs, fields)
    assert plain["shaped"] is False  # no form value: the first drawing stays
    locked = share.open_link({"lock": "preset"}, specs, fields)  # the builder's "preset" lock
    assert locked["variant"] == {"__type__": "update", "interactive": False}


def test_the_readme_lesson_links_are_valid(page_fields):
    _, specs = page_fields
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    lessons = re.findall(r"^\| [^|]+ \| `\?([^`]+)` \|", readme, flags=re.M)
    assert len(lessons) == 3
    for text in lessons:
        link = links.parse(dict(parse_qsl(text)), specs, variants=design.shape.QPA_VARIANTS)
        assert not link.notices and link.lock, text


def test_a_link_without_qubits_gets_the_fewest_that_fit():
    result = design.on_change(FULL, {**OVER, "n_qubits": 1})  # open_link's 1, then the redraw
    assert (result["chunk_size"], result["n_qubits"]) == (4096, 5)
    assert "174.70%" in result["headline"]


# -- what matters, in plain words -------------------------------------------------------------------


def test_qpa_larger_than_lora_is_flagged_in_the_cards_chart_and_explanation():
    view = design.design_view(OVER)
    assert f"{view.counts.ratio:.2%}" == "174.70%"
    assert "qpa-over" in view.headline and "MORE parameters than LoRA" in view.headline
    names = [t.name for t in view.tradeoff.data]
    assert "your choice: more than LoRA" in names
    assert any("QPA has more parameters" in a.text for a in view.tradeoff.layout.annotations)
    assert "more than LoRA" in view.explain and "rank 2" in view.explain
    fine = design.design_view({"model": "smollm2", "rank": 4, "chunk_size": 2048, "depth": 8})
    assert "qpa-over" not in fine.headline and "your choice" in [t.name for t in fine.tradeoff.data]


def test_paper_points_only_on_their_model_and_rank():
    def shape(model, rank, chunk_size) -> dict:
        return {"model": model, "target_modules": ["lm_head"], "rank": rank,
                "chunk_size": chunk_size, "n_qubits": 0, "depth": 8}  # fmt: skip

    def paper(*values):
        return [t.name for t in design.design_view(shape(*values)).tradeoff.data
                if "paper" in t.name]  # fmt: skip

    assert paper("gpt2-config", 4, 2048) == ["GPT-2 r=4 (paper)"]
    assert paper("gemma-config", 4, 4096) == ["Gemma-2 r=4 (paper)"]
    assert paper("gpt2-config", 8, 2048) == []
    assert paper("smollm2", 4, 2048) == []
    label = design.design_view(shape("gpt2-config", 4, 2048)).tradeoff.layout.annotations[0]
    assert label.showarrow and label.ay > 0  # below its point, off the rising curve


def test_field_help_leads_with_one_plain_sentence(page_fields):
    fields, _ = page_fields
    assert fields["rank"].info.startswith("How many directions the adapter may change")
    assert "A is r×d_in" in fields["rank"].info  # the precise notation stays
    assert fields["steps"].info.startswith("How many updates training makes.")


# -- rough edges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("rank", 0, "`rank` = 0"),
        ("depth", 600, "`depth` = 600"),
        ("chunk_size", -5, "`chunk_size`"),
        ("n_qubits", 40, "`n_qubits` = 40"),
    ],
)
def test_out_of_range_values_name_the_field_and_every_view_says_so(
    page_fields, name, value, message
):
    fields, _ = page_fields
    assert fields[name].preprocess(value) == value  # not gradio's nameless "Value 0 is less…"
    values = {"model": "smollm2", "target_modules": ["lm_head"], "rank": 4, "chunk_size": 2048,
              "n_qubits": 7, "depth": 8, name: value}  # fmt: skip
    with pytest.raises(gr.Error) as error:  # the change itself: an error naming the field
        design.on_change(FULL, values)
    assert message in error.value.message
    result = design.on_refused(FULL, values)  # then every view says so
    table, headline, command, explain = (result[k] for k in ("table", "headline", "command",
                                                              "explain"))  # fmt: skip
    assert table == [] and message in headline and message in explain
    assert command.startswith("# not run:") and message in command  # not the old count
    assert "chunk_size" not in result and "n_qubits" not in result  # the form keeps its values
    assert design.on_refused(FULL, OVER) == {}  # fine: nothing changes


def test_no_progress_text_covers_the_run_cards(tmp_path):
    from app.ui import build_app

    demo = build_app(Studio.create(runs_root=tmp_path, demo=False))
    ids = {c._id: c.elem_id for c in demo.blocks.values()}
    watched = {"watch", "progress", "cli"}
    shown = [
        (d.get("api_name"), d["show_progress"])
        for d in demo.config["dependencies"]
        if watched & {ids.get(o) for o in d["outputs"]}
    ]
    assert shown and all(mode in ("hidden", "minimal") for _, mode in shown), shown


def test_train_numbers_leave_their_range_to_the_configs(page_fields):
    fields, _ = page_fields
    assert fields["steps"].preprocess(0) == 0  # the launch then says "`steps` = 0 …"


def test_each_run_card_stops_only_its_run(tmp_path):
    studio = Studio.create(runs_root=tmp_path, demo=False)
    first, second = (studio.jobs.submit(TINY_RUN, "g") for _ in range(2))
    card = progress.run_card(studio, first)
    assert f'data-stop-run="{first}"' in card
    train.on_cancel(studio, first)  # what the card's Stop sends: its one id
    assert studio.jobs.state(first)["state"] == "cancelled"
    assert studio.jobs.state(second)["state"] == "queued"
    assert "data-stop-run" not in progress.run_card(studio, first)  # nothing left to stop


def _launch(studio, group, methods, state, stamp):
    ids = []
    for i, method in enumerate(methods):
        config = TINY_RUN.replace(adapter=TINY_RUN.adapter.replace(method=method))
        run = create_run(
            config, studio.root, name=f"2026010{stamp}-00000{i}-{method}-aaaa", group=group
        )
        run.set_status(state, created=f"2026-01-0{stamp}T00:00:0{i}")
        ids.append(run.id)
    return ids


def test_fresh_pages_show_the_last_qpa_and_lora_pair_not_a_cancelled_run(tmp_path):
    studio = Studio.create(runs_root=tmp_path, demo=False)
    pair = _launch(studio, "a", ["lora", "qpa-lora"], "done", 1)  # launched LoRA first
    cancelled = _launch(studio, "b", ["qpa-lora"], "cancelled", 2)
    alone = _launch(studio, "c", ["qpa-lora"], "done", 3)
    assert train.default_watch(studio) == alone  # the newest launch not cancelled
    assert progress.latest_launch(studio, pair=True) == pair[::-1]  # QPA first, then LoRA
    assert runs.on_refresh(studio, [])[1]["value"] == pair[::-1]
    assert cancelled[0] not in train.default_watch(studio)
    watch, cli = train.on_load(studio)  # a reload keeps the Equivalent CLI box
    assert watch["value"] == alone and alone[0] in cli and "-m qpa train" in cli


def test_qpa_curves_never_take_the_lora_colour():
    lora = {"label": "l", "method": "lora", "train": [(1, 2.0)], "val": []}
    qpa = {**lora, "label": "q", "method": "qpa-lora"}
    colours = {t.name: t.line["color"] for t in plots.curves_figure([lora, qpa]).data}
    assert colours == {"l": plots.LORA_COLOR, "q": plots.QPA_COLOR}


def test_train_log_has_every_evaluation_and_each_phase_with_times(tmp_path):
    pytest.importorskip("chatterbot_corpus")
    from qpa import train as run_training

    config = TINY_RUN.replace(train=TINY_RUN.train.replace(steps=4, eval_every=2))
    run = create_run(config, tmp_path)
    run_training(config, run=run)
    log = run.log_text()
    evals = [line for line in log.splitlines() if "eval at step" in line]
    assert [line.split("eval at step ")[1].split(" ")[0] for line in evals] == ["0/4", "2/4", "4/4"]
    assert all(" s): val loss " in line and "perplexity" in line for line in evals)
    for phase in ("preparing qpa-lora", "model and data ready in", "training from step 0 to 4",
                  "adapter exported in", "done at step 4"):  # fmt: skip
        assert phase in log, log


def test_results_axis_has_numbers_and_placeholders_fit():
    points = [{"label": n, "method": m, "params": p, "mean": 9.0, "std": None, "seeds": [0],
               "share": None} for n, m, p in (("q", "qpa-lora", 106_264), ("l", "lora", 198_912))]  # fmt: skip
    axis = result_plots.params_figure(points, "all tokens").layout.xaxis
    assert list(axis.ticktext) == ["106K", "199K"]  # one decade: plotly alone prints none
    note = result_plots.shots_figure([], "all tokens").layout.annotations[0].text
    assert max(len(line) for line in note.split("<br>")) <= plots.MESSAGE_WIDTH


def test_a_refused_variance_job_tells_only_a_demo_visitor_to_run_locally(tmp_path):
    for demo in (False, True):
        studio = Studio.create(runs_root=tmp_path, demo=demo)
        with pytest.raises(gr.Error) as error:
            results.on_variance(studio, "20", "64", "global", 10_000)
        assert "above this studio's cap" in error.value.message
        assert ("run the studio locally" in error.value.message) is demo
