"""How many CPU threads torch uses for the backbone forward, and where it must keep one.

The load that matters is other processes': the 1-minute load average counts this process too
(two busy threads add about 2), so `OwnLoad` averages this process's own CPU use the way the
kernel averages the load, and `forward_threads` subtracts it. A forked child (a ZeroGPU call, a
DataLoader worker) keeps one thread: the parent's OpenMP threads did not survive the fork, and a
parallel region there would wait for them forever.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import torch

LOAD_WINDOW_S = 60.0  # the time constant of the kernel's 1-minute load average


class OwnLoad:
    """This process's part of the 1-minute load average: its CPU use in cores (all threads),
    averaged with the same time constant, updated at each call."""

    def __init__(self) -> None:
        self.cpu, self.wall, self.value = _cpu_seconds(), time.monotonic(), 0.0

    def __call__(self) -> float:
        cpu, wall = _cpu_seconds(), time.monotonic()
        if wall > self.wall:
            keep = math.exp(-(wall - self.wall) / LOAD_WINDOW_S)
            rate = max(0.0, cpu - self.cpu) / (wall - self.wall)  # 0 in a fresh fork
            self.value = keep * self.value + (1 - keep) * rate
        self.cpu, self.wall = cpu, wall
        return self.value


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


own_load = OwnLoad()


def forward_threads(cores: int | None = None, load: float | None = None) -> int:
    """Threads for the backbone forward: this process's cores, fewer when other processes keep
    them busy (`load`: theirs; by default the load average less this process's `own_load`).

    On a shared 2-core machine with other jobs running, one thread measured 2.7× faster than two
    (threads that wait for each other at every operation lose more than they gain). Counting
    this process's own load as others' made a lone run cache its rows on one thread of two; so
    did a load of 0.74 left by processes that had just ended (the average lags a minute), hence
    a core counts as taken only when others' load covers all of it.

    >>> forward_threads(cores=2, load=0.9), forward_threads(cores=2, load=1.2)
    (2, 1)
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if load is None:
        load = os.getloadavg()[0] - own_load() if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores or 1, cores - math.floor(max(0.0, load))))  # whole cores taken


def _one_thread_after_fork() -> None:
    global _FORKED
    _FORKED = True
    torch.set_num_threads(1)


_FORKED = False
os.register_at_fork(after_in_child=_one_thread_after_fork)


@contextlib.contextmanager
def thread_count(n: int):
    """Run the block with `n` torch threads (unless OMP_NUM_THREADS fixes them, or this is a
    forked child, which keeps one), then restore."""
    before = torch.get_num_threads()
    if "OMP_NUM_THREADS" not in os.environ and not _FORKED:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
