"""The machinery under every config section: fields that carry their help, choices and range,
type coercion, validation messages that name the field, and the JSON round trip.

`qpa.config` (the run's sections) and `qpa.tool_config` (the tools' sections) are built on it;
both re-export `Config` and `option` from `qpa.config`.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(Config):
...     width: int = option(4, "A width.", min=1)
>>> Demo(width="3")
Traceback (most recent call last):
...
ValueError: `width` = '3' must be a whole number.
>>> Demo.from_dict({"width": 2.0}).width
2
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field
from typing import Any


def option(default: Any, help: str, choices: tuple[str, ...] = (), **range_: float) -> Any:
    """A dataclass field carrying its help text, allowed choices and numeric range."""
    meta = {"help": help, "choices": choices, **range_}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


class Config:
    """Base for config dataclasses: type coercion, range/choice checks, JSON round trip."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            _check_range(f, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} expects a mapping, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown {cls.__name__} field(s) {', '.join(f'`{k}`' for k in unknown)}; "
                f"known: {', '.join(sorted(known))}."
            )
        return cls(**data)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    return list(value) if isinstance(value, tuple) else value


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check `value` against the annotation `hint`, converting lossless cases (list→tuple, 3→3.0)."""
    if isinstance(hint, type) and issubclass(hint, Config):
        return value if isinstance(value, hint) else hint.from_dict(value)
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"`{name}` = {value!r} must be a list of {item.__name__}.")
        return tuple(_coerce(name, v, item) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"`{name}` = {value!r} must be true or false.")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"`{name}` = {value!r} must be a whole number.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"`{name}` = {value!r} must be a number.")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"`{name}` = {value!r} must be a finite number.")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise ValueError(f"`{name}` = {value!r} must be text.")
    return value


def _check_range(f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if meta.get("choices") and v not in meta["choices"]:
            raise ValueError(f"`{f.name}` = {v!r} is not one of: {', '.join(meta['choices'])}.")
        if "min" in meta and v < meta["min"]:
            raise ValueError(f"`{f.name}` = {v!r} must be ≥ {_bound(meta['min'])}.")
        if "max" in meta and v > meta["max"]:
            raise ValueError(f"`{f.name}` = {v!r} must be ≤ {_bound(meta['max'])}.")
        if "above" in meta and v <= meta["above"]:
            raise ValueError(f"`{f.name}` = {v!r} must be > {_bound(meta['above'])}.")


def _bound(value: float) -> str:
    """A range bound as written: whole numbers in full (4,294,967,295), others short."""
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
