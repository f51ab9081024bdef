"""facetrail.periodic.PeriodicJob: the one schedule loop behind retention, oversight and index checks."""

from __future__ import annotations

import threading

from facetrail.periodic import PeriodicJob


def test_an_interval_of_zero_never_starts() -> None:
    calls: list[int] = []
    job = PeriodicJob("t-off", lambda: 0, lambda: calls.append(1))
    assert job.start() is False
    job.stop()
    assert calls == [] and job.runs == 0


def test_a_failing_run_is_logged_and_the_schedule_goes_on(caplog) -> None:  # type: ignore[no-untyped-def]
    three = threading.Event()
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) >= 3:
            three.set()
        if len(calls) == 1:
            raise RuntimeError("first run fails")

    job = PeriodicJob("t-flaky", lambda: 0.01, flaky, first_delay_seconds=0)
    assert job.start() is True
    assert three.wait(timeout=10), "the schedule stopped after a failure"
    job.stop()
    assert job.runs >= 3
    assert "scheduled job t-flaky failed" in caplog.text and "first run fails" in caplog.text


def test_stop_wakes_a_long_wait_at_once() -> None:
    job = PeriodicJob("t-long", lambda: 3600, lambda: None)
    assert job.start() is True
    stopped = threading.Thread(target=job.stop)
    stopped.start()
    stopped.join(timeout=5)
    assert not stopped.is_alive() and job.runs == 0
