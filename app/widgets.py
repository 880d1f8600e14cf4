"""Number and slider fields that leave range checks to the configs.

gradio's own check ("Value 0 is less than minimum value 1") runs before any handler, names no
field and leaves every view showing the old value. These fields keep the browser's range hints
but pass any number through, so the configs' `ValueError` names the field and the whole page
shows the same, refused, value. (Plain gradio components with their check switched off: a
subclass would make gradio write a ``.pyi`` stub beside this file.)

>>> Slider(1, 8, 4, label="rank").preprocess(0), Number(4, minimum=1, precision=0).preprocess(-5)
(0, -5)
"""

from __future__ import annotations

from typing import Any

import gradio as gr


def _unchecked(component: gr.Number | gr.Slider) -> Any:
    def preprocess(payload: float | None) -> float | int | None:
        return (
            None if payload is None else gr.Number.round_to_precision(payload, component.precision)
        )

    component.preprocess = preprocess
    return component


def Number(*args, **kwargs) -> gr.Number:  # noqa: N802 (a component, named like one)
    return _unchecked(gr.Number(*args, **kwargs))


def Slider(*args, **kwargs) -> gr.Slider:  # noqa: N802
    return _unchecked(gr.Slider(*args, **kwargs))
