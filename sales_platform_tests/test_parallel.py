"""Days worked concurrently come back in day order, at most N at once, and a failure stops the rest."""

from __future__ import annotations

import threading
import time

import pytest

from sales_platform.core.parallel import in_order


class Recorder:
    def __init__(self, fail_on: str | None = None, delays: dict[str, float] | None = None) -> None:
        self.lock = threading.Lock()
        self.running = self.peak = 0
        self.started: list[str] = []
        self.finished: list[str] = []
        self.threads: set[str] = set()
        self.fail_on, self.delays = fail_on, delays or {}

    def __call__(self, day: str) -> str:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(day)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(self.delays.get(day, 0.02))
            if day == self.fail_on:
                raise ValueError(f"{day} is broken")
            return day.upper()
        finally:
            with self.lock:
                self.running -= 1
                self.finished.append(day)


DAYS = [f"d{i:02d}" for i in range(9)]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_in_order_whatever_finishes_first(workers):
    slow_first = Recorder(delays={"d00": 0.2, "d03": 0.15})  # later days finish before earlier ones
    got = list(in_order(slow_first, DAYS, workers))
    assert got == [(d, d.upper()) for d in DAYS]
    assert slow_first.peak == workers
    assert sorted(slow_first.finished) == DAYS


def test_one_worker_runs_in_the_calling_thread():
    recorder = Recorder()
    list(in_order(recorder, DAYS, 1))
    assert recorder.threads == {threading.current_thread().name}


def test_a_failure_stops_later_days_lets_running_ones_finish_and_raises_in_place():
    recorder = Recorder(fail_on="d02", delays={"d03": 0.3})
    seen = []
    with pytest.raises(ValueError, match="d02 is broken"):
        for day, _ in in_order(recorder, DAYS, 2):
            seen.append(day)
    assert seen == ["d00", "d01"]  # every day before the failing one was handed back
    assert "d03" in recorder.finished  # running when d02 failed: finished, not cut off
    assert set(recorder.started) == set(recorder.finished)  # none left running
    assert not set(recorder.started) & set(DAYS[4:])  # nothing started after the failure was seen


def test_a_consumer_that_stops_early_leaves_no_day_running():
    recorder = Recorder()
    for day, _ in in_order(recorder, DAYS, 3):
        if day == "d01":
            break
    assert recorder.running == 0
    assert set(recorder.finished) == set(recorder.started)


@pytest.mark.parametrize(("sizes", "setting", "expected"), [
    ([1_000, 2_000, 3_000], 2, 2),
    ([1_000, 2_000, 3_000], 4, 4),
    ([1_000, 9 << 20, 3_000], 2, 1),  # one large day: one at a time, memory of one day
    ([1_000], 2, 1),
    ([], 2, 1),
])
def test_days_run_at_once_only_when_each_is_small(sizes, setting, expected):
    from sales_platform.core.parallel import workers_for

    assert workers_for(sizes, setting) == expected
