"""Every rule with a threshold or a period, exactly at its boundary, one step under and one over.

Each test aims at one rule and is named after it, so the first red test names the rule that broke.
Expectations are written by hand from the inputs (the rules in docs/pipeline.md and
docs/configuration.md), cross-checked with the oracle where it implements the rule; never taken
from a platform count.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from sales_platform.core import quality as q
from sales_platform_tests import oracle

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


# ---- time: future tolerance (1 h after now, UTC) and the start date -----------------------------

def _timestamp_reason(raw: str, now: datetime = NOW, **rules) -> str | None:
    _, reasons = q.route_timestamps(pd.Series([raw]), q.QualityRules(**rules), now)
    return reasons[0]


@pytest.mark.parametrize(("raw", "reason"), [
    ("2026-06-01T12:59:59Z", None),
    ("2026-06-01T13:00:00Z", None),  # exactly now + 1 h: not more than 1 h after now
    ("2026-06-01T13:00:01Z", q.FUTURE_TIMESTAMP),
    ("2026-06-01T13:00:00.000001Z", q.FUTURE_TIMESTAMP),  # the stored second is floored, not the rule
    ("2026-06-01T13:00:00.5Z", q.FUTURE_TIMESTAMP),
    ("2026-06-01T15:00:00+02:00", None),  # the same instant written with an offset
    ("2026-06-01T15:00:01+02:00", q.FUTURE_TIMESTAMP),
    ("2026-06-01 13:00:00", None),  # naive: read in the source zone (UTC)
])
def test_future_timestamp_is_more_than_one_hour_after_now(raw: str, reason):
    assert _timestamp_reason(raw) == reason
    verdict = oracle.check_timestamp(raw, now=NOW)
    assert (verdict if isinstance(verdict, str) else None) == reason


def test_future_tolerance_edge_is_taken_from_now_with_its_fraction_and_zone():
    # now in another zone and with a fraction: the edge is the same instant + 1 h, to the microsecond
    now = datetime(2026, 6, 1, 14, 0, 0, 500000, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert _timestamp_reason("2026-06-01T15:00:00.5Z", now) is None
    assert _timestamp_reason("2026-06-01T15:00:00.500001Z", now) == q.FUTURE_TIMESTAMP
