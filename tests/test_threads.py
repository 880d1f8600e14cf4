"""CPU threads: a run does not count its own load as others', and a forked child computes on
one thread instead of hanging in OpenMP."""

import os
import subprocess
import sys
import time

import pytest

from qpa.training import threads
from qpa.training.threads import OwnLoad, forward_threads


def test_a_lone_run_does_not_count_its_own_load_as_others(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.5, 1.0))
    monkeypatch.setattr(threads, "own_load", lambda: 1.9)  # all of the load is ours
    assert forward_threads(cores=2) == 2
    monkeypatch.setattr(threads, "own_load", lambda: 0.0)  # all of it is others'
    assert forward_threads(cores=2) == 1


def test_own_load_measures_this_process_cpu_use(monkeypatch):
    monkeypatch.setattr(threads, "LOAD_WINDOW_S", 1e-3)  # no averaging: the last interval's use
    own = OwnLoad()
    time.sleep(0.3)
    assert own() < 0.2  # asleep
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        pass
    assert 0.3 < own() < 1.3  # one busy thread (or less of one, on a busy machine)


FORKED_CHILD = """
import faulthandler, os, sys, torch
from qpa.training.threads import thread_count
torch.set_num_threads(2)
x = torch.randn(256, 256)
for _ in range(10):
    x @ x  # the parent's OpenMP threads start
pid = os.fork()
if pid == 0:
    faulthandler.dump_traceback_later(30, exit=True)  # a hung child ends, printing where
    with thread_count(2):  # asks for 2 threads, as the row cache does on an idle machine
        y = (x @ x).sum()
    os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""  # the child exits 0, or 1 from the watchdog


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_computes_on_one_thread_instead_of_hanging():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    child = subprocess.run([sys.executable, "-c", FORKED_CHILD], env=env, timeout=60)
    assert child.returncode == 0

