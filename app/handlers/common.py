"""The error boundary between the engine and the page, and small shared helpers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

USER_ERRORS = (ValueError, OSError)


def _nothing(n_outputs: int) -> Any:
    return gr.skip() if n_outputs == 1 else tuple(gr.skip() for _ in range(n_outputs))


def guarded(n_outputs: int) -> Callable:
    """Turn a user error raised by `fn` into a page warning; the outputs stay unchanged.

    Works for plain functions and generators (streaming handlers): a generator that fails
    mid-stream keeps what it already showed.
    """

    def decorate(fn: Callable) -> Callable:
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def stream(*args, **kwargs):
                try:
                    yield from fn(*args, **kwargs)
                except USER_ERRORS as e:
                    gr.Warning(str(e))
                    yield _nothing(n_outputs)

            return stream

        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except USER_ERRORS as e:
                gr.Warning(str(e))
                return _nothing(n_outputs)

        return call

    return decorate


def as_int(name: str, value: Any) -> int:
    """A whole number from a form field (gradio gives floats or None); ValueError naming it."""
    if value is None or value == "":
        raise ValueError(f"`{name}` is empty; enter a whole number.")
    if isinstance(value, str):
        value = value.strip()
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"`{name}` = {value!r} must be a whole number.") from None
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"`{name}` = {value!r} must be a whole number.")
    return int(value)


def as_names(value: Any) -> tuple[str, ...]:
    """A list of names from a multiselect (list) or comma-separated text."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(v).strip() for v in value if str(v).strip())


def as_ints(name: str, value: Any) -> tuple[int, ...]:
    """Whole numbers from comma-separated text or a list; ValueError naming the field."""
    items = as_names(value) if not isinstance(value, (list, tuple)) else value
    return tuple(as_int(name, v) for v in items)
