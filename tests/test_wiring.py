"""Named forms at the wiring: a handler sees one dict by field name and answers by output name,
what it leaves out stays as it was, and the API endpoints keep the forms' field order (for
positional callers) while naming each parameter after its field."""

import pytest

pytest.importorskip("gradio", reason="the app tests need gradio (requirements.txt)")

import gradio as gr

from app.handlers import data, shape, train
from app.state import Studio
from app.ui import build_app
from app.wiring import as_outputs, named


def test_a_handler_answers_by_name_and_what_it_leaves_out_is_skipped():
    with gr.Blocks():
        inputs = {"a": gr.Number(1), "b": gr.Number(2)}
        outputs = {"total": gr.Number(), "note": gr.Markdown()}
    seen = []

    def add(form: dict) -> dict:
        seen.append(form)
        return {"total": form["a"] + form["b"]}

    event = named(add, inputs, outputs)
    assert event["inputs_kwargs"] == inputs and event["outputs"] == list(outputs.values())
    assert event["fn"](a=1, b=2) == (3, gr.skip()) and seen == [{"a": 1, "b": 2}]
    assert event["fn"].__name__ == "add"  # gradio names the endpoint after the handler
    assert as_outputs({}, outputs) == (gr.skip(), gr.skip())  # nothing changes
    with pytest.raises(KeyError, match="totl"):  # a misspelt output is an error, not a no-op
        as_outputs({"totl": 3}, outputs)
    assert as_outputs({"total": 3}, {"total": outputs["total"]}) == 3  # a lone output: its value
    assert named(lambda form: form["a"], inputs, outputs["note"])["fn"](a="x", b=0) == "x"


def test_the_api_endpoints_take_the_forms_fields_in_order_and_by_name(tmp_path):
    demo = build_app(Studio.create(runs_root=tmp_path, demo=False))
    endpoints = demo.get_api_info()["named_endpoints"]

    def names(endpoint: str) -> list[str]:
        return [p["parameter_name"] for p in endpoints[endpoint]["parameters"]]

    assert names("/launch") == list(train.FORM_FIELDS)
    for endpoint in ("/design", "/design_chunk", "/design_qubits"):
        assert names(endpoint) == list(shape.FIELDS)
    assert names("/preview_data") == ["model", *data.DATA_FIELDS]
