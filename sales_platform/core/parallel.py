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
