"""Named forms at the wiring: a handler takes one dict of values by field name and returns one
dict of values by output name; `named` turns it into a gradio event's arguments, so values are
converted to and from gradio's components here, once, and nowhere else.

The inputs travel as gradio's ``inputs_kwargs``, in the order of their map, which is also the
API endpoint's parameter order and names (``client.predict(rank=8, ...)`` works, and so do
positional values). The outputs are a name → component map: a name the handler leaves out of
its dict is not updated (`gr.skip`), a name that is not an output is an error. With a single
component as `outputs`, the handler returns its value.

>>> with gr.Blocks():
...     inputs = {"a": gr.Number(1), "b": gr.Number(2)}
...     outputs = {"total": gr.Number(), "note": gr.Markdown()}
...     event = named(lambda form: {"total": form["a"] + form["b"]}, inputs, outputs)
>>> total, note = event["fn"](a=1, b=2)
>>> total, note == gr.skip()
(3, True)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import gradio as gr
from gradio.components import Component

Fields = Mapping[str, Component]


def named(
    fn: Callable[[dict[str, Any]], Any],
    inputs: Fields,
    outputs: Fields | Component | None = None,
) -> dict[str, Any]:
    """The ``fn``, ``inputs_kwargs`` and ``outputs`` of a gradio event that calls ``fn(form)``
    with the values of `inputs` by name (a generator's yields shaped alike); spread them into a listener (``.click(**named(...))``)."""
    many = isinstance(outputs, Mapping)

    def shaped(out: Any) -> Any:
        return as_outputs(out, outputs, _name(fn)) if many else out

    if inspect.isgeneratorfunction(fn):  # a streaming handler: each dict it yields, shaped

        def call(**form: Any) -> Any:
            for out in fn(form):
                yield shaped(out)

    else:

        def call(**form: Any) -> Any:
            return shaped(fn(form))

    call.__name__ = call.__qualname__ = _name(fn)  # gradio names endpoints after it
    return {
        "fn": call,
        "inputs_kwargs": dict(inputs),
        "outputs": list(outputs.values()) if many else outputs,
    }


def as_outputs(values: Mapping[str, Any], outputs: Fields, source: str = "a handler") -> Any:
    """`values` by output name as gradio takes them: in the order of `outputs`, `gr.skip()` for
    a name left out (a lone value for a lone output); KeyError for a name that is no output."""
    unknown = set(values) - set(outputs)
    if unknown:
        raise KeyError(f"{source} returned values for no output: {sorted(unknown)}")
    ordered = [values.get(name, gr.skip()) for name in outputs]
    return ordered[0] if len(ordered) == 1 else tuple(ordered)


def _name(fn: Callable) -> str:
    """A handler's name, through `functools.partial`."""
    return getattr(fn, "__name__", None) or _name(fn.func)
