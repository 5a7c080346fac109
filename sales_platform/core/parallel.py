"""Independent days of a range worked on concurrently, results handed back in day order.

A range run (a backfill) used to work its days one after another. The per-day file stages
(cleaning, encryption) spend much of their time in code that releases the GIL (Parquet and zstd,
Arrow kernels, AES, fsync, the database), so two days in two threads overlap well on two cores.
Each day stays atomic and independent: the caller's per-day function touches only that day's
layers and rows, so the result is the same as a sequential run; reports come back in day order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Days whose input layer is larger than this are worked one at a time: two large days at once would
# double the step's peak memory (a 1M-row day lands ~25 MB and peaks at ~750 MB RSS).
CONCURRENT_DAY_MAX_BYTES = 8 << 20  # ~300k rows


def workers_for(day_bytes: Sequence[int], workers: int,
                max_bytes: int = CONCURRENT_DAY_MAX_BYTES) -> int:
    """The degree to use for days of these input sizes: ``workers``, or 1 when any day is large
    (memory stays that of one day, whatever the range) or there is only one day."""
    if len(day_bytes) <= 1 or max(day_bytes) > max_bytes:
        return 1
    return max(1, workers)


def in_order(work: Callable[[Item], Result], items: Sequence[Item],
             workers: int) -> Iterator[tuple[Item, Result]]:
    """``(item, work(item))`` for each item, at most ``workers`` running at once, in the items'
    order. One worker (or one item) runs in the calling thread. When a call raises, no further
    item starts, the ones already running finish (a day is never left half-done by its
    neighbour's failure), and the error is raised at that item's place in the order."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield item, work(item)
        return
    pending: deque[tuple[Item, Future]] = deque()
    upcoming = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sales-day") as pool:
        try:
            for item in upcoming:
                pending.append((item, pool.submit(work, item)))
                if len(pending) >= workers:
                    break
            while pending:
                item, future = pending.popleft()
                result = future.result()  # raises the day's own error, in order
                for following in upcoming:
                    pending.append((following, pool.submit(work, following)))
                    break
                yield item, result
        finally:
            for _, future in pending:
                future.cancel()  # not started: never starts; running: finishes before the pool exits
