"""A task repeated in a daemon thread until stopped: the queue's poller, the Hub mirror."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Repeating:
    """Run `task` now and every `interval` seconds in a daemon thread named `name`; an exception
    is logged (`failure`, with its traceback) and the next round goes on."""

    def __init__(self, task: Callable[[], object], interval: float, name: str, failure: str):
        self.task, self.interval, self.failure = task, interval, failure
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.task()
            except Exception:  # one bad round must not end the others
                logging.getLogger(self.task.__module__).exception(self.failure)
            self._stop.wait(self.interval)

    def stop(self, timeout_s: float = 10.0) -> None:
        """End after the current round (waiting for it at most `timeout_s`)."""
        self._stop.set()
        self.thread.join(timeout_s)
