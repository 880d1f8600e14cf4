"""How a command's run config is assembled: ``--config FILE`` (else a base, else the defaults),
then ``--variant NAME``'s overrides, then the flags typed on the command line.

>>> import argparse
>>> args = argparse.Namespace(config=None, variant="qpa-shallow-gelu")
>>> load_config(args).qpa.hidden_sizes
(64, 48)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qpa.config import RunConfig
from qpa.flags import config_from_args
from qpa.safe_io import MAX_JSON_BYTES, read_regular
from qpa.studies.sweep import apply_variant


def load_config(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """``--config FILE`` (else `base`, else defaults), then ``--variant NAME``'s overrides, then
    the given flags: what is typed explicitly wins."""
    if getattr(args, "config", None):
        data = read_regular(Path(args.config).expanduser(), MAX_JSON_BYTES, "config")
        text = data.decode("utf-8", errors="replace")
        try:
            base = RunConfig.from_json(text)
        except ValueError as e:
            raise ValueError(f"`config` = {args.config!r}: {e}") from None
    if getattr(args, "variant", None) is not None:
        base = apply_variant(base or RunConfig(), args.variant)
    return config_from_args(args, base)
