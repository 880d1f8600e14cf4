"""The error boundary between the engine and the page, and small shared helpers."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from qpa import PRESETS, check_run_id

USER_ERRORS = (ValueError, OSError)
ERROR_SECONDS = 10  # how long an error stays in the page (a warning's default)
log = logging.getLogger(__name__)


def as_error(e: Exception) -> gr.Error:
    """The `gr.Error` a visitor and an API caller see for `e`: a user error's own message;
    for anything else its type only (the traceback goes to the server log, never out)."""
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, USER_ERRORS):
        return gr.Error(str(e), duration=ERROR_SECONDS, print_exception=False)
    log.error("internal error in a handler", exc_info=e)
    return gr.Error(
        f"Internal error ({type(e).__name__}); the server log has the details.",
        duration=ERROR_SECONDS,
        print_exception=False,
    )


def guarded(fn: Callable) -> Callable:
    """Turn any error raised by `fn` into `as_error`'s `gr.Error`: the page shows its message,
    an API client receives the same one (gradio sends a `gr.Error`'s message even with
    ``show_error=False``), and the outputs stay as they were.

    Works for plain functions and generators (streaming handlers): a generator that fails
    mid-stream keeps what it already showed.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise as_error(e) from None

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise as_error(e) from None

    return call


def as_int(name: str, value: Any) -> int:
    """A whole number from a form field (gradio gives floats or None); ValueError naming it."""
    if value is None or value == "":
        raise ValueError(f"`{name}` is empty; enter a whole number.")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"`{name}` = {value!r} must be a whole number.")
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


def check_model(caps_any_model: bool, model: Any) -> str:
    """`model` (stripped), if this studio may read it: a demo reads only the presets it offers,
    never a local folder or another Hub id. Every endpoint taking a model calls this."""
    if not isinstance(model, str):
        raise ValueError(f"`model` = {model!r} must be text: a preset or a Hub id.")
    if not model.strip():
        raise ValueError("`model` is empty; pick a preset or type a Hub id.")
    model = model.strip()
    if not caps_any_model and model not in PRESETS:
        raise ValueError(
            f"`model` = {model!r}: this demo loads only {', '.join(PRESETS)}; "
            "run the studio locally (python app.py) for other models."
        )
    return model


def as_names(value: Any, name: str = "names") -> tuple[str, ...]:
    """A list of names from a multiselect (list) or comma-separated text; ValueError naming
    the field for anything else."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"`{name}` = {value!r} must be a list of names.")
    return tuple(str(v).strip() for v in value if str(v).strip())


def as_run_ids(name: str, value: Any) -> list[str]:
    """Run ids from a run picker (one id, a list, or None); ValueError naming the field for
    anything that is no valid run id (the pickers accept ids typed or sent by API callers)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"`{name}` = {value!r} must be a list of run ids.")
    return [check_run_id(i, name) for i in items]


def as_ints(name: str, value: Any) -> tuple[int, ...]:
    """Whole numbers from comma-separated text or a list; ValueError naming the field."""
    items = as_names(value, name) if not isinstance(value, (list, tuple)) else value
    return tuple(as_int(name, v) for v in items)
