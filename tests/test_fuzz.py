"""Fuzzing every config field: seeded random values of the wrong type, out of range or of the
wrong shape, through the CLI (as a flag and in a ``--config`` file) and through the app's
handlers (the Design form, the Launch form, the count API). Each is refused with a clear message,
never a traceback or an "internal error", and the runs folder stays byte-identical.

Every value is invalid by construction, so a value that is accepted is a bug too (it would
have trained a run).
"""

import json
import math
import os
import random
import typing

import gradio as gr
import pytest
from test_bad_inputs import tree_hash
from tiny_run import tiny_form

from app.handlers import design, shape, train
from app.state import Studio
from qpa.cli.main import main
from qpa.config import SECTIONS, field_help

SEED = 17
PICKS = 3  # values tried per field and surface
FIELDS = [  # (section, name, type hint, metadata)
    (section, name, typing.get_type_hints(cls)[name], info)
    for section, cls in SECTIONS.items()
    for name, info in field_help(cls).items()
]
COMMAND = {"model": "count", "adapter": "count", "qpa": "count", "data": "train", "train": "train"}
FREE_TEXT = {  # text fields without choices: values that name nothing that exists
    "model": lambda r: f"nobody/no-such-model-{r.randrange(10**6)}",
    "corpus": lambda r: f"/no/such/corpus-{r.randrange(10**6)}.txt",
    "eval_corpus": lambda r: f"/no/such/eval-{r.randrange(10**6)}.txt",
    "target_modules": lambda r: f"warp_core_{r.randrange(10**6)}",
    "topics": lambda r: f"no-topic-{r.randrange(10**6)}",
}


def word(r: random.Random) -> str:
    return "".join(r.choice("xyzqé-_ ") for _ in range(r.randint(1, 8))).strip() or "x"


def numbers(r: random.Random, hint, info: dict) -> list:
    """Out-of-range values of a numeric field (none when it has no bound on that side)."""
    out = [] if hint is int else [math.nan, math.inf, -math.inf]
    if "min" in info:
        out.append(info["min"] - r.randint(1, 10**6))
    if "above" in info:
        out.append(info["above"] - r.random())
    if "max" in info:
        out += [info["max"] + r.randint(1, 10**6), 2**70]
    if hint is int:
        out.append(r.randint(1, 100) + 0.5)  # not whole
    return out


def bad_values(r: random.Random, name: str, hint, info: dict, json_types: bool) -> list:
    """Invalid values for one field: wrong type (only where the surface carries types), out of
    range, wrong shape, unknown choice or a name of nothing."""
    item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
    if hint is bool:
        return [word(r), 1, [True], None] if json_types else []  # a flag takes no value
    pool = [{"k": 1}, [[1, 2]], word(r) if item is not str else 7] if json_types else []
    if item in (int, float):
        pool += numbers(r, item, info)
        pool.append(word(r) + "?")
        if typing.get_origin(hint) is tuple:
            pool += [[info["min"] - 1] if "min" in info else [word(r)], [[1]]]
    elif info.get("choices"):
        pool += [f"{word(r)}-not-a-choice", "NONE"]
    elif name in FREE_TEXT:
        pool.append(FREE_TEXT[name](r))
    return r.sample(pool, min(PICKS, len(pool)))


def as_flag(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


@pytest.fixture
def home(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("QPA_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("QPA_DEBUG", raising=False)
    (tmp_path / "runs").mkdir()
    return tmp_path


def refused_by_cli(argv: list[str], capsys) -> str:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err, (argv, code, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    return err


def test_fuzzed_config_values_are_refused_by_the_cli(home, capsys):
    r = random.Random(SEED)
    before, tried = tree_hash(home / "runs"), 0
    for section, name, hint, info in FIELDS:
        base = [COMMAND[section], *(["--model", "tiny-llama"] if name != "model" else [])]
        for value in bad_values(r, name, hint, info, json_types=False):
            refused_by_cli([*base, f"--{name.replace('_', '-')}", as_flag(value)], capsys)
            tried += 1
        for value in bad_values(r, name, hint, info, json_types=True):
            path = home / "config.json"
            path.write_text(json.dumps({section: {name: value}}))  # NaN and Infinity included
            refused_by_cli([*base[:1], "--config", str(path)], capsys)
            tried += 1
    assert tried >= 150
    assert tree_hash(home / "runs") == before and os.listdir(home / "runs") == []


def refused_by_app(fn, *args) -> str:
    with pytest.raises(gr.Error) as error:
        fn(*args)
    message = error.value.message
    assert not message.startswith("Internal error") and "Traceback" not in message, message
    return message


def test_fuzzed_form_values_are_refused_by_the_app(home):
    r = random.Random(SEED)
    studio = Studio.create(runs_root=home / "runs", demo=False)
    hints = {name: (hint, info) for _, name, hint, info in FIELDS}
    good = tiny_form(n_qubits=3, max_length=48, loss_on="all")
    before, tried = tree_hash(home / "runs"), 0
    for field in train.FORM_FIELDS:
        if field not in hints or hints[field][0] is bool:  # a checkbox: any value is a bool
            continue
        hint, info = hints[field]
        for value in bad_values(r, field, hint, info, json_types=True):
            form = {**good, field: value}
            refused_by_app(train.on_launch, studio, form)
            if field in shape.FIELDS:
                refused_by_app(design.on_change, studio, {k: form[k] for k in shape.FIELDS})
            tried += 1
    for value in (7, None, {"k": 1}, "", "nobody/none", -1):
        refused_by_app(design.count_api(studio), value if value != -1 else "gpt2-config", "x")
        tried += 1
    assert tried >= 60
    assert tree_hash(home / "runs") == before and os.listdir(home / "runs") == []
