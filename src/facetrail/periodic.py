"""One way to run server work on a schedule: a daemon thread per job (retention, oversight, index checks).

Guaranteed: a job whose interval is 0 or less never starts; a failing run is logged with its traceback and the
schedule goes on (the next run retries); ``stop`` wakes the thread at once and waits for a run in progress.
Jobs use the server's own context, so they must be safe beside requests (each job's module says why it is).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicJob:
    """Run ``job`` every ``interval_seconds`` (first after ``first_delay_seconds``, default one interval).

    ``name``: the thread's name and the log's; ``interval_seconds`` is read again before every wait, so a
    callable follows the settings; ``runs`` counts finished runs and ``ran`` is set after each (tests wait on it).
    """

    def __init__(
        self,
        name: str,
        interval_seconds: Callable[[], float],
        job: Callable[[], object],
        *,
        first_delay_seconds: float | None = None,
    ) -> None:
        self.name = name
        self._interval = interval_seconds
        self._job = job
        self._first_delay = first_delay_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.ran = threading.Event()

    def start(self) -> bool:
        """Start the thread unless the schedule is off; True if it started."""
        if self._interval() <= 0:
            return False
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        wait = self._interval() if self._first_delay is None else self._first_delay
        while not self._stop.wait(wait):
            try:
                self._job()
            except Exception:  # the schedule goes on; the next run retries
                log.exception("scheduled job %s failed", self.name)
            self.runs += 1
            self.ran.set()
            wait = self._interval()
