"""Named presets: `apply_variant`, ``--variant`` on the CLI (a config file, then the variant, then
the flags typed), and the Design tab's Preset dropdown that sets the form and follows edits."""

import pytest

pytest.importorskip("gradio", reason="the app tests need gradio (requirements.txt)")

import json

import gradio as gr
from tiny_run import TINY_RUN

from app.handlers import design, shape
from app.state import Studio
from qpa import VARIANTS, apply_variant, open_run
from qpa.cli.main import main

SMOLLM2 = {**shape.DEFAULTS, "model": "smollm2-config"}  # lm_head, r = 4, the default shape
FULL = Studio.create(runs_root="unused-runs", demo=False)  # the Design tab reads only its caps
SHALLOW_GELU = {"hidden_sizes": "64,48", "activation": "gelu", "fourier_features": 16}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("QPA_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    return tmp_path / "runs"


def counted(capsys, *argv: str) -> dict:
    assert main(["count", "--model", "smollm2-config", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


# -- engine -------------------------------------------------------------------------------------


def test_apply_variant_changes_only_what_the_variant_names():
    base = TINY_RUN.replace(qpa=TINY_RUN.qpa.replace(start="offset"))
    config = apply_variant(base, "qpa-shallow-gelu")
    assert config.qpa == base.qpa.replace(hidden_sizes=(64, 48), activation="gelu",
                                          fourier_features=16)  # fmt: skip
    assert (config.model, config.adapter, config.data, config.train) == (
        base.model, base.adapter, base.data, base.train)  # fmt: skip
    assert apply_variant(base, "lora").adapter.method == "lora"
    with pytest.raises(ValueError, match=r"`variant` = 'nope' is not one of: lora, qpa, "):
        apply_variant(base, "nope")


# -- CLI ----------------------------------------------------------------------------------------


def test_count_variant_gives_the_best_measured_shape_and_typed_flags_win(capsys):
    assert counted(capsys, "--variant", "qpa-shallow-gelu")["qpa"] == 106_152
    by_hand = counted(capsys, "--hidden-sizes", "64,48", "--activation", "gelu",
                      "--fourier-features", "16")  # fmt: skip
    assert by_hand["qpa"] == 106_152 and by_hand["max_rank"] == 49
    overridden = counted(capsys, "--variant", "qpa-shallow-gelu", "--activation", "none")
    affine = counted(capsys, "--hidden-sizes", "64,48", "--fourier-features", "16",
                     "--activation", "none")  # fmt: skip
    assert overridden == affine and overridden["max_rank"] != by_hand["max_rank"]
    assert counted(capsys, "--variant", "qpa")["qpa"] == 106_264  # the paper's shape
    assert counted(capsys) == by_hand  # the defaults are the best measured shape


@pytest.mark.chatterbot
def test_train_variant_over_a_config_file_under_the_flags(runs, tmp_path, capsys):
    path = tmp_path / "tiny.json"
    path.write_text(TINY_RUN.to_json())
    argv = ["train", "--config", str(path), "--variant", "qpa-shallow-gelu", "--hidden-sizes",
            "16,8", "--name", "v"]  # fmt: skip
    assert main(argv) == 0
    run = open_run("v")
    qpa = run.config.qpa
    assert (qpa.hidden_sizes, qpa.activation, qpa.fourier_features) == ((16, 8), "gelu", 16)
    assert (qpa.chunk_size, qpa.depth, run.config.model.model) == (64, 2, "tiny-llama")  # file
    assert run.status()["state"] == "done"
    capsys.readouterr()
    assert main(["train", "--resume", "v", "--variant", "qpa"]) == 2
    assert "drop --variant" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "count"])
def test_an_unknown_variant_is_an_error_listing_the_choices(runs, capsys, command):
    assert main([command, "--variant", "qpa-deep"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: `variant` = 'qpa-deep' is not one of: ")
    assert all(name in err for name in VARIANTS) and not runs.exists()


@pytest.mark.parametrize("command", ["train", "count"])
def test_help_lists_the_variants(capsys, command):
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    assert exit.value.code == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines at hyphens
    assert "--variantNAME" in text and "qpa-shallow-gelumeasuredbest" in text
    assert "Appliedover--config;theconfigflagsgivenoverrideit." in text
    assert ",".join(VARIANTS) in text


# -- the Design tab's Preset dropdown -------------------------------------------------------------


def picked(name: str, form: dict | None = None) -> dict:
    """on_variant's outputs by name: the linked chunk size and qubits, the views and the fields."""
    return design.on_variant(FULL, {"variant": name, **SMOLLM2, **(form or {})})


def test_presets_are_the_qpa_variants_with_the_best_measured_marked():
    values = [value for _, value in shape.VARIANT_CHOICES]
    assert values == [n for n in VARIANTS if not n.startswith("lora")] + [shape.CUSTOM]
    marked = [value for label, value in shape.VARIANT_CHOICES if "best measured" in label]
    assert marked == ["qpa-shallow-gelu"]
    assert shape.matching_variant(shape.DEFAULTS) == "qpa-shallow-gelu"  # the default


def test_picking_best_measured_sets_its_fields_and_the_live_count():
    out = picked("qpa-shallow-gelu", {"depth": 4, "start": "offset", "shots": 100})
    assert {k: out[k] for k in SHALLOW_GELU} == SHALLOW_GELU
    assert (out["depth"], out["start"], out["shots"]) == (8, "random", 0)  # back to defaults
    assert (out["chunk_size"], out["n_qubits"]) == (2048, 7)
    rows = {row[0]: row[1] for row in out["table"]}
    assert rows["QPA total"] == "106,152" and "≤ 49" in out["headline"]
    assert out["command"].endswith("--model smollm2-config --n-qubits 7")  # the defaults
    paper = picked("qpa")
    assert paper["command"].endswith(
        "--hidden-sizes 32,64,128,128,64,32,32 --activation none --fourier-features 0")  # fmt: skip
    views = {"table", "headline", "tradeoff", "circuit", "probs", "command", "explain"}
    assert set(out) == {"n_qubits", *shape.VARIANT_FIELDS, *views}  # the fields and every view


def test_a_preset_with_its_own_chunk_size_relinks_the_qubits():
    out = picked("qpa-wide-gelu", {"chunk_size": 512, "n_qubits": 9})
    assert (out["chunk_size"], out["n_qubits"], out["hidden_sizes"]) == (1024, 8, "96")
    back = picked("qpa", {**{k: out[k] for k in shape.VARIANT_FIELDS}, "chunk_size": 1024})
    assert (back["chunk_size"], back["n_qubits"], back["hidden_sizes"]) == (
        2048, 7, "32,64,128,128,64,32,32")  # fmt: skip


def test_the_dropdown_reads_custom_only_while_the_form_differs_from_every_preset():
    form = {**SMOLLM2, **shape.variant_values("qpa-shallow-gelu"), "n_qubits": 7}

    def match(**edits) -> str:
        return shape.matching_variant({**form, **edits})

    assert match() == "qpa-shallow-gelu"
    assert match(rank=8, n_qubits=8, use_dora=True) == "qpa-shallow-gelu"  # not the QPA shape
    assert match(hidden_sizes="64, 48", chunk_size=2048.0) == "qpa-shallow-gelu"  # as typed
    assert match(activation="relu") == match(activation="none") == shape.CUSTOM
    assert match(hidden_sizes="48", activation="none") == "qpa-shallow-fourier"  # another one
    assert match(hidden_sizes="64,x") == shape.CUSTOM  # half typed


def test_picking_custom_changes_nothing_and_a_bad_preset_is_refused():
    assert design.on_variant(FULL, {"variant": "custom", **SMOLLM2}) == {}  # every output skipped
    with pytest.raises(gr.Error, match="`preset` = 'lora' is not one of: qpa, "):
        design.on_variant(FULL, {"variant": "lora", **SMOLLM2})
