"""Numbers, durations and text tables as the CLI and the app show them (no torch, no I/O).

>>> format_number(3.14159), format_number(None), format_number(198912, ",")
('3.142', '–', '198,912')
>>> format_duration(5), format_duration(125), format_duration(3725), format_duration(None)
('5s', '2m 05s', '1h 02m', '–')
>>> print(format_table([("a", "1,000"), ("bb", "7")], ("what", "n"), right=(1,)))
what      n
a     1,000
bb        7
"""

from __future__ import annotations

from typing import Any

MISSING = "–"  # shown for a value not measured (yet)


def format_number(value: Any, spec: str = ".3f") -> str:
    """`value` formatted with `spec` (fixed-point past 10^12 as 4 significant digits, so a
    diverged perplexity stays one short cell), or "–" when it is not a number (not measured).

    >>> format_number(1.5e300)
    '1.5e+300'
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, ".4g" if spec.endswith("f") and abs(value) >= 1e12 else spec)
    return MISSING


def format_duration(seconds: float | None) -> str:
    """A wall time in the largest two units: ``12s``, ``3m 05s``, ``1h 02m``."""
    if seconds is None:
        return MISSING
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h {m % 60:02d}m" if m >= 60 else f"{m}m {s:02d}s" if m else f"{s}s"


def format_table(
    rows: list[tuple], header: tuple | None = None, right: tuple[int, ...] = ()
) -> str:
    """Rows as aligned text columns; columns listed in `right` are right-aligned."""
    rows = [tuple(str(c) for c in r) for r in ([header] if header else []) + rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    just = [str.rjust if i in right else str.ljust for i in range(len(widths))]
    return "\n".join(
        "  ".join(j(c, w) for j, c, w in zip(just, r, widths, strict=True)).rstrip() for r in rows
    )
