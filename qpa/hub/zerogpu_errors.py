"""ZeroGPU's errors in plain words.

The `spaces` package raises a ``gr.Error`` whose title names the kind ("ZeroGPU quota
exceeded", "ZeroGPU illegal duration", "ZeroGPU queue timeout", "ZeroGPU worker error",
"ZeroGPU client error", "ZeroGPU pending credits exceeded") and whose message has the
details, e.g. "You have exceeded your free ZeroGPU quota (120s requested vs. 56s left). Try
again in 0:09:48." (spaces 0.51; older releases wrote "You have exceeded your GPU quota (46s
left vs. 60s requested)... retry in 0:09:48"). `explain_zerogpu_error` turns title and message
into what happened, what it means for the run and what to do; it returns None for any other
error. Pure string work: the app passes the error's title and message.

>>> explain_zerogpu_error("GPU task aborted", "ZeroGPU worker error").split(";")[0]
'The GPU call was cut short before it finished (it ran past the duration it asked ZeroGPU for, or its process crashed)'
>>> explain_zerogpu_error("division by zero") is None
True
"""

from __future__ import annotations

import re

_QUOTA = re.compile(
    r"exceeded your (?:(?P<tier>free |Pro )?ZeroGPU|GPU) quota \("
    r"(?:(?P<asked>\d+)s requested vs\. (?P<left>\d+)s left"
    r"|(?P<left2>\d+)s left vs\. (?P<asked2>\d+)s requested)\)"
)
_WAIT = re.compile(r"(?:Try again|retry) in (?P<wait>(?:\d+ days?, )?\d+:\d\d:\d\d)", re.I)
_ILLEGAL = re.compile(r"requested GPU duration \((?P<asked>\d+)s\) is larger than the maximum")
RESUME = "the run keeps its last checkpoint"
MORE_QUOTA = "log in with a Hugging Face account for more quota (a PRO account has the most)"


def explain_zerogpu_error(message: str, title: str = "") -> str | None:
    """What a ZeroGPU error means, in plain words; None when `message`/`title` are not ZeroGPU's."""
    text = f"{title} {message}"
    if m := _QUOTA.search(text):
        asked, left = m["asked"] or m["asked2"], m["left"] or m["left2"]
        wait = _WAIT.search(text)
        when = f"in {plain_wait(wait['wait'])}" if wait else "later"
        return (
            f"Your ZeroGPU quota is used up for now: the next GPU call needs {asked} s and "
            f"{left} s are left. Try again {when} ({RESUME}), or {MORE_QUOTA}."
        )
    if "ZeroGPU runs limit" in text:
        return f"You reached ZeroGPU's limit of GPU calls for today; {RESUME}. Try again tomorrow."
    if m := _ILLEGAL.search(text):
        return (
            f"ZeroGPU refused a GPU call of {m['asked']} s, longer than your account may ask for "
            f"at once; use fewer steps or a smaller batch, or {MORE_QUOTA}."
        )
    if "reached its GPU limit" in text:
        return (
            "This Space has used up the GPU time ZeroGPU gives visitors who are not logged in; "
            f"{MORE_QUOTA}, or try again later ({RESUME})."
        )
    if "No GPU was available" in text:
        return (
            "Every ZeroGPU GPU is busy right now and none came free within a minute; try again "
            f"in a few minutes ({RESUME}). Logged-in visitors wait in a faster queue."
        )
    if "GPU task aborted" in text:
        return (
            "The GPU call was cut short before it finished (it ran past the duration it asked "
            f"ZeroGPU for, or its process crashed); {RESUME}. Try again, with fewer steps or a "
            "smaller batch if it happens again."
        )
    if "Expired ZeroGPU proxy token" in text:
        return "Your page's ZeroGPU session expired; reload the page and start again."
    if "credits allocated to running tasks" in text:
        return (
            "Too many of your ZeroGPU credits are held by tasks still running; start again "
            "once they have finished."
        )
    if "ZeroGPU worker error" in title:
        return (
            f"Training failed on the GPU ({message or 'unknown error'}); the run's log has the "
            "details."
        )
    if "ZeroGPU" in title:
        return f"ZeroGPU refused the GPU call: {message}"
    return None


def plain_wait(wait: str) -> str:
    """A wait as ZeroGPU prints it (a timedelta) in words.

    >>> plain_wait("0:09:48"), plain_wait("1:00:05"), plain_wait("2 days, 3:00:00")
    ('9 min 48 s', '1 h 0 min', '2 days 3 h')
    """
    days, _, clock = wait.rpartition(", ")
    h, m, s = (int(x) for x in clock.split(":"))
    if days:
        return f"{days} {h} h"
    return f"{h} h {m} min" if h else f"{m} min {s} s" if m else f"{s} s"
