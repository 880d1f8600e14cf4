"""Shareable links: the Design and Train forms, the open tab and a lesson's locks round-trip
through the page URL's plain query parameters (no server-side state, so a link survives a
restart).

A `Spec` says how one field is read from text: a whole number or a number in the configs'
range, one of its choices, a list, a switch or free text. `parse` turns a query into form
values, the lesson (``tab``, ``lock``, ``hide`` and ``preset``, the pinned QPA variant) and the
notices for what it had to ignore; `query` writes the values that differ from the page's
defaults back.

>>> specs = {"rank": Spec("int", 4, lo=1, hi=1024), "entangler": Spec("choice", "ladder",
...          choices=("ladder", "ring"))}
>>> link = parse({"rank": "2", "entangler": "star", "lock": "rank", "hide": "train"}, specs)
>>> link.values, link.lock, link.hide, link.notices
({'rank': 2}, ('rank',), ('train',), ["`entangler` = 'star' is not one of: ladder, ring"])
>>> query({"rank": 2, "entangler": "ladder"}, specs, lock=["rank"], tab="train")
'rank=2&tab=train&lock=rank'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

TABS = ("design", "train", "runs", "results", "chat")
VARIANT_KEY = "preset"  # the pinned variant's parameter and lock name, as shared links spell it
LESSON_KEYS = ("tab", "lock", "hide", VARIANT_KEY)
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Spec:
    kind: str  # int, float, bool, choice, list, text
    default: Any  # the page's initial value (not written to a link)
    choices: tuple = ()  # allowed values of a choice or a list (empty: any)
    lo: float | None = None
    hi: float | None = None


@dataclass
class Link:
    values: dict[str, Any] = field(default_factory=dict)
    tab: str = ""
    lock: tuple[str, ...] = ()
    hide: tuple[str, ...] = ()
    variant: str = ""  # the QPA variant the lesson pins
    notices: list[str] = field(default_factory=list)


def _number(name: str, spec: Spec, text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"`{name}` = {text!r} is not a number") from None
    if spec.kind == "int":
        if not value.is_integer():
            raise ValueError(f"`{name}` = {text!r} is not a whole number")
        value = int(value)
    if (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi):
        raise ValueError(f"`{name}` = {text} is outside {spec.lo:g}…{spec.hi:g}")
    return value


def read(name: str, spec: Spec, text: str) -> Any:
    """One field's value from its link text; ValueError saying why it cannot be used."""
    if spec.kind in ("int", "float"):
        return _number(name, spec, text)
    if spec.kind == "bool":
        if text.lower() not in TRUE + FALSE:
            raise ValueError(f"`{name}` = {text!r} is not on/off")
        return text.lower() in TRUE
    if spec.kind == "list":
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if spec.choices and t not in spec.choices]
        if bad:
            raise ValueError(f"`{name}` has unknown entries: {', '.join(bad)}")
        return items
    if spec.kind == "choice" and spec.choices and text not in spec.choices:
        raise ValueError(f"`{name}` = {text!r} is not one of: {', '.join(spec.choices)}")
    return text


def _names(key: str, text: str, known: Iterable[str], notices: list[str]) -> tuple[str, ...]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        notices.append(f"`{key}` names unknown controls: {', '.join(unknown)}")
    return tuple(n for n in names if n not in unknown)


def parse(
    params: Mapping[str, str], specs: Mapping[str, Spec], variants: Sequence[str] = ()
) -> Link:
    """A link's form values and lesson; what it cannot use is left out, with a notice each."""
    link = Link()
    for key, text in params.items():
        if key in specs:
            try:
                link.values[key] = read(key, specs[key], text)
            except ValueError as e:
                link.notices.append(str(e))
        elif key == "tab":
            if text in TABS:
                link.tab = text
            else:
                link.notices.append(f"`tab` = {text!r} is not one of: {', '.join(TABS)}")
        elif key == "lock":
            link.lock = _names(key, text, [*specs, VARIANT_KEY], link.notices)
        elif key == "hide":
            link.hide = _names(key, text, [*TABS, *specs], link.notices)
        elif key == VARIANT_KEY and text in variants:
            link.variant = text
        else:
            link.notices.append(f"`{key}` is not a setting of this page")
    return link


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def query(
    values: Mapping[str, Any], specs: Mapping[str, Spec], tab: str = "", lock: Sequence[str] = (),
    hide: Sequence[str] = (), variant: str = "",
) -> str:  # fmt: skip
    """The query string of `values` (those that differ from the defaults) and the lesson."""
    pairs = [
        (name, _text(values[name]))
        for name, spec in specs.items()
        if name in values
        and values[name] is not None
        and _text(values[name]) != _text(spec.default)
    ]
    lesson = ((VARIANT_KEY, variant), ("tab", tab if tab != TABS[0] else ""),
              ("lock", ",".join(lock or ())), ("hide", ",".join(hide or ())))  # fmt: skip
    pairs += [(k, v) for k, v in lesson if v]
    return urlencode(pairs, safe=",")


def notice(notices: Sequence[str]) -> str:
    """The one message that lists what a link had to leave out ("" when nothing)."""
    if not notices:
        return ""
    return (
        "This link had settings the page could not use, so they were ignored: "
        + "; ".join(notices)
        + "."
    )
