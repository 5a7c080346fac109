"""Bounded waits that explain themselves when they time out.

``eventually`` polls until a condition holds; on timeout it raises ``WaitTimeout`` naming what it
waited for, how long, and the last value it observed (or the last error the probe raised), plus any
diagnostics the caller adds (log tails, process states). ``call_within`` runs a call that must finish
within a bound and, if it does not, reports where it is stuck instead of hanging.

Every wait is capped at ``MAX_WAIT_S``, well below pytest-timeout (600 s in pyproject.toml): a slow
test fails with our message, not with pytest-timeout's thread dump.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
MAX_WAIT_S = 500.0
_NOTHING = object()


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what for and what was seen last."""


def _ready(value: object) -> bool:
    return value is not None and value is not False


def _shorten(value: object, limit: int = 2000) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def eventually(what: str, probe: Callable[[], T], *, timeout: float, interval: float = 0.5,
               until: Callable[[T], bool] = _ready, retry_on: tuple[type[BaseException], ...] = (),
               check: Callable[[], None] | None = None, diagnose: Callable[[], str] | None = None) -> T:
    """Call ``probe`` every ``interval`` s until ``until(value)`` holds; return that value.

    ``until`` defaults to "not None and not False". Exceptions of the ``retry_on`` types count as "not
    yet" (and are reported on timeout); any other exception ends the wait. ``check`` runs before every
    probe and may raise to abort early (e.g. a server process exited). ``diagnose`` adds text to the
    timeout message.
    """
    if not 0 <= timeout <= MAX_WAIT_S:
        raise ValueError(f"timeout {timeout} s for {what!r}: must be between 0 and {MAX_WAIT_S:.0f} s "
                         "(pytest-timeout is 600 s)")
    started = time.monotonic()
    deadline = started + timeout
    last: Any = _NOTHING
    last_error: BaseException | None = None
    probes = 0
    while True:
        if check is not None:
            check()
        probes += 1
        try:
            value = probe()
        except retry_on as exc:
            last_error = exc
        else:
            last_error = None
            last = value
            if until(value):
                return value
        if time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    seen = "nothing" if last is _NOTHING else _shorten(last)
    message = (f"timed out after {time.monotonic() - started:.1f} s (limit {timeout:.0f} s, {probes} probes) "
               f"waiting for {what}; last observed: {seen}")
    if last_error is not None:
        message += f"; last probe raised {type(last_error).__name__}: {last_error}"
    if diagnose is not None:
        try:
            message += f"\n{diagnose()}"
        except Exception as exc:  # diagnostics must not hide the timeout
            message += f"\n(diagnostics failed: {type(exc).__name__}: {exc})"
    raise WaitTimeout(message)


def call_within(what: str, call: Callable[[], T], limit: float, *,
                diagnose: Callable[[], str] | None = None) -> T:
    """Run ``call`` (in a daemon thread) and return its result or raise its exception, provided it
    finishes within ``limit`` s; otherwise raise ``WaitTimeout`` with the stack it is stuck in."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=f"call_within: {what}", daemon=True)
    worker.start()

    def stuck_in() -> str:
        frame = sys._current_frames().get(worker.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(finished)\n"
        extra = f"\n{diagnose()}" if diagnose is not None else ""
        return f"still running, at:\n{stack}{extra}"

    eventually(f"{what} to finish", lambda: not worker.is_alive(), timeout=limit, interval=0.02,
               diagnose=stuck_in)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
