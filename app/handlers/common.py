"""The error boundary between the engine and the page, and small shared helpers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from qpa import PRESETS

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


def api_errors(fn: Callable) -> Callable:
    """For an API-only endpoint: a user error becomes `gr.Error`, whose message the caller sees
    even with ``show_error=False`` (and no traceback)."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            raise gr.Error(str(e), print_exception=False) from None

    return call


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


def as_float(name: str, value: Any) -> float:
    """A number from a form field (empty: 0); ValueError naming the field otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` = {value!r} must be a number.") from None


def check_model(caps_any_model: bool, model: str) -> str:
    """`model`, if this studio may load it: a demo loads only the presets it offers."""
    if not caps_any_model and model not in PRESETS:
        raise ValueError(
            f"`model` = {model!r}: this demo loads only {', '.join(PRESETS)}; "
            "run the studio locally (python app.py) for other models."
        )
    return model


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
