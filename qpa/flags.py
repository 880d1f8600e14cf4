"""Command-line flags generated from the config dataclasses, and configs rebuilt from them.

Every field of every section in `qpa.config.SECTIONS` becomes ``--field-name`` with the field's
help text, choices and default, so the CLI, the app's tooltips and the docs cannot drift apart.
Tuples are comma-separated (``--hidden-sizes 32,64``), booleans come in pairs
(``--cache-backbone/--no-cache-backbone``). Flags default to None, so only what the user typed
overrides the defaults or a ``--config`` file. `config_to_argv` goes the other way, for the
app's "equivalent command" box.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_config_flags(parser, ("adapter", "train"))
>>> args = parser.parse_args(["--rank", "8", "--target-modules", "q_proj,v_proj", "--steps", "5"])
>>> config = config_from_args(args)
>>> config.adapter.rank, config.adapter.target_modules, config.train.steps
(8, ('q_proj', 'v_proj'), 5)
>>> config_to_argv(config)
['--target-modules', 'q_proj,v_proj', '--rank', '8', '--steps', '5']
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterable
from typing import Any

from qpa.config import SECTIONS, RunConfig, field_help


def flag_name(field: str) -> str:
    """``chunk_size`` → ``--chunk-size``."""
    return "--" + field.replace("_", "-")


def _format_default(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def _list_parser(item: type):
    """An argparse `type` turning ``a,b`` into a tuple of `item` (empty text: empty tuple)."""

    def parse(text: str) -> tuple:
        return tuple(item(t.strip()) for t in text.split(",") if t.strip())

    parse.__name__ = f"comma-separated {item.__name__}"  # argparse quotes it in its errors
    return parse


def _flag_options(info: dict[str, Any], hint: Any) -> dict[str, Any]:
    """add_argument keywords for one field: type or action, choices, metavar."""
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return {"type": _list_parser(item), "metavar": f"{item.__name__.upper()},..."}
    if info.get("choices"):
        return {"type": hint, "choices": info["choices"]}
    return {"type": hint, "metavar": {int: "N", float: "X"}.get(hint, "TEXT")}


def add_config_flags(parser: argparse.ArgumentParser, sections: Iterable[str] = tuple(SECTIONS)):
    """One argument group per run-config section, one flag per field (dest ``section.field``,
    default None: only typed flags override a base config)."""
    seen: set[str] = set()
    for section in sections:
        names = set(field_help(SECTIONS[section]))
        if names & seen:  # a new field would shadow another section's flag
            raise ValueError(f"Config field(s) {sorted(names & seen)} appear in two sections.")
        seen |= names
        add_section_flags(parser, section, SECTIONS[section], dest=f"{section}.", typed_only=True)


def add_section_flags(
    parser: argparse.ArgumentParser,
    title: str,
    cls: type,
    fields: Iterable[str] | None = None,
    dest: str = "",
    typed_only: bool = False,
) -> None:
    """Flags for `fields` (default: all) of config class `cls`, in a group named `title`.

    Without `typed_only` the flags default to the fields' defaults, so `section_from_args`
    rebuilds the section from them.
    """
    hints, info_of = typing.get_type_hints(cls), field_help(cls)
    group = parser.add_argument_group(f"{title} settings")
    for name in fields or info_of:
        info = info_of[name]
        text = f"{info['help']} (default: {_format_default(info['default'])})"
        group.add_argument(
            flag_name(name),
            dest=f"{dest}{name}",
            default=None if typed_only else info["default"],
            help=text.replace("%", "%%"),
            **_flag_options(info, hints[name]),
        )


def section_from_args(args: argparse.Namespace, cls: type):
    """The config section `cls` from flags added by `add_section_flags` (validated).

    >>> from qpa.tool_config import ChatConfig
    >>> parser = argparse.ArgumentParser()
    >>> add_section_flags(parser, "chat", ChatConfig)
    >>> section_from_args(parser.parse_args(["--temperature", "0"]), ChatConfig)
    ChatConfig(max_new_tokens=128, temperature=0.0, top_p=0.9)
    """
    return cls(**{name: getattr(args, name) for name in field_help(cls)})


def set_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The run-config flags the user actually gave: ``{"section.field": value}``."""
    return {
        k: v for k, v in vars(args).items() if k.split(".")[0] in SECTIONS and "." in k and v is not None
    }


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """`base` (default: all defaults) with every given flag applied, validated afresh."""
    data = (base or RunConfig()).to_dict()
    for key, value in set_flags(args).items():
        section, name = key.split(".", 1)
        data[section][name] = value
    return RunConfig.from_dict(data)


def config_to_argv(config: RunConfig, base: RunConfig | None = None) -> list[str]:
    """Flags that turn `base` (default: all defaults) into `config`, in section order."""
    base = base or RunConfig()
    argv: list[str] = []
    for section in SECTIONS:
        new, old = getattr(config, section).to_dict(), getattr(base, section).to_dict()
        for name, value in new.items():
            if value == old[name]:
                continue
            if isinstance(value, bool):
                argv.append(flag_name(name) if value else flag_name(f"no_{name}"))
            else:
                text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
                argv += [flag_name(name), text]
    return argv
