"""The sales report: its numbers read from the warehouse, its charts as PNG bytes, and the same
figures as short bar tables.

matplotlib with the Agg backend (no display; safe in step processes and Celery workers). The UI
shows a markdown value on the asset page itself only when it is shorter than 1000 characters, and
behind a "Show Markdown" button otherwise: the PNG charts (base64 images) sit behind the button, the
bar tables (text, kept under that limit) show at a glance.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import cache

from sqlalchemy import Engine, func, select

from sales_platform.core import quality as q
from sales_platform.core.categories import LABELS, UNPRICED
from sales_platform.core.landing import MALFORMED_ROW
from sales_platform.core.warehouse.tables import (
    agg_sales_by_category_monthly,
    agg_sales_daily,
    sales_rejects,
)

DPI = 80
ROW_TOO_LARGE = "row_too_large"  # a landing reject (csvread), never on a day's chart
CHARTS = ("daily_revenue", "revenue_by_category", "reject_reasons")
# One colour per reason, the same on every report (matplotlib's tab20 palette, in this order).
PALETTE = ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
           "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
           "#bcbd22", "#dbdb8d", "#17becf", "#9edae5")
REASONS = (q.MISSING_TRANSACTION_ID, q.MISSING_CUSTOMER_ID, q.MISSING_PRODUCT_ID,
           q.INVALID_IDENTIFIER, q.MISSING_QUANTITY, q.QUANTITY_NOT_NUMERIC, q.QUANTITY_NOT_INTEGER,
           q.QUANTITY_NOT_POSITIVE, q.QUANTITY_OUTLIER, q.UNKNOWN_PRODUCT, q.DUPLICATE_CONFLICTING,
           q.DUPLICATE_IDENTICAL, q.DUPLICATE_ACROSS_DAYS, q.MISSING_TIMESTAMP, q.INVALID_TIMESTAMP,
           q.FUTURE_TIMESTAMP, q.BEFORE_START_DATE, MALFORMED_ROW, ROW_TOO_LARGE)


def reason_colour(reason: str) -> str:
    """The reason's own colour; a reason this list does not know gets the last one."""
    return PALETTE[REASONS.index(reason)] if reason in REASONS else PALETTE[-1]


@dataclass
class ReportData:
    first: date
    last: date
    daily: dict[date, tuple[int, Decimal]] = field(default_factory=dict)  # transactions, revenue
    by_category: dict[tuple[int, int], dict[str, Decimal]] = field(default_factory=dict)
    rejects: dict[date, dict[str, int]] = field(default_factory=dict)

    @property
    def transactions(self) -> int:
        return sum(n for n, _ in self.daily.values())

    @property
    def revenue(self) -> Decimal:
        return sum((r for _, r in self.daily.values()), Decimal(0))

    @property
    def rejected(self) -> int:
        return sum(sum(v.values()) for v in self.rejects.values())


def report_window(engine: Engine, days: int) -> tuple[date, date] | None:
    """The ``days`` days ending at the newest day in agg_sales_daily, but never before its oldest
    day (no empty days drawn before the first sale); None when it is empty."""
    with engine.connect() as conn:
        first, last = conn.execute(select(func.min(agg_sales_daily.c.sale_date),
                                          func.max(agg_sales_daily.c.sale_date))).one()
    if last is None:
        return None
    return max(first, last - timedelta(days=days - 1)), last


def read_report_data(engine: Engine, first: date, last: date) -> ReportData:
    d, c, r = agg_sales_daily.c, agg_sales_by_category_monthly.c, sales_rejects.c
    data = ReportData(first, last)
    months = {(day.year, day.month) for day in _days(first, last)}
    with engine.connect() as conn:
        for day, n, revenue in conn.execute(select(d.sale_date, d.transactions, d.total_revenue)
                                            .where(d.sale_date.between(first, last))):
            data.daily[day] = (int(n), Decimal(str(revenue)))
        for y, m, category, total in conn.execute(
                select(c.year, c.month, c.sales_category, c.total_revenue)
                .where(c.year.between(first.year, last.year))):
            if (y, m) in months and total is not None:
                data.by_category.setdefault((int(y), int(m)), {})[category] = Decimal(str(total))
        for day, reason, n in conn.execute(
                select(r.sale_date, r.reason, func.count()).where(r.sale_date.between(first, last))
                .group_by(r.sale_date, r.reason)):
            data.rejects.setdefault(day, {})[reason] = int(n)
    return data


def rejects_without_day(engine: Engine) -> int:
    """Rejected rows with no sale day (unreadable timestamps, malformed lines): not on any chart."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(sales_rejects)
                            .where(sales_rejects.c.sale_date.is_(None))).scalar_one()


@cache
def _pyplot():
    """pyplot with the Agg backend (no display, no GUI toolkit), imported by the first chart:
    it is the slowest import of the code location (~1 s) and most processes never draw."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot
    from matplotlib import pyplot

    return pyplot


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _date_axis(axis) -> None:
    """A few readable date labels, whatever the number of days (no overlapping labels)."""
    from matplotlib import dates

    locator = dates.AutoDateLocator(minticks=3, maxticks=8)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))


def _legend_outside(axis) -> None:
    """The legend right of the plot, so it never covers a bar."""
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    _pyplot().close(figure)
    return buffer.getvalue()


def daily_revenue_chart(data: ReportData) -> bytes:
    days = _days(data.first, data.last)
    revenue = [float(data.daily.get(d, (0, 0))[1]) for d in days]
    transactions = [data.daily.get(d, (0, 0))[0] for d in days]
    figure, axis = _pyplot().subplots(figsize=(8, 3.2))
    axis.bar(days, revenue, color="#4c78a8", label="revenue")
    axis.set_ylabel("revenue")
    twin = axis.twinx()
    twin.plot(days, transactions, color="#f58518", marker=".", label="transactions")
    twin.set_ylabel("transactions")
    axis.set_title(f"Daily revenue and transactions, {data.first} to {data.last}")
    _date_axis(axis)
    return _png(figure)


def revenue_by_category_chart(data: ReportData) -> bytes:
    months = sorted(data.by_category)
    labels = [f"{y}-{m:02d}" for y, m in months]
    figure, axis = _pyplot().subplots(figsize=(8, 3.2))
    bottom = [0.0] * len(months)
    for category, colour in zip(LABELS, ("#72b7b2", "#4c78a8", "#e45756"), strict=True):
        values = [float(data.by_category[m].get(category, 0)) for m in months]
        axis.bar(labels, values, bottom=bottom, color=colour, label=category)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axis.set_ylabel("revenue")
    axis.set_title(f"Revenue by sales category and month ({UNPRICED} sales have no revenue)")
    _legend_outside(axis)
    return _png(figure)


def reject_reasons_chart(data: ReportData) -> bytes:
    days = _days(data.first, data.last)
    reasons = sorted({reason for per in data.rejects.values() for reason in per})
    figure, axis = _pyplot().subplots(figsize=(9, 3.2))
    bottom = [0] * len(days)
    for reason in reasons:
        values = [data.rejects.get(d, {}).get(reason, 0) for d in days]
        axis.bar(days, values, bottom=bottom, label=reason, color=reason_colour(reason))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if not reasons:
        axis.text(0.5, 0.5, "no rejected rows in this period", ha="center", transform=axis.transAxes)
    axis.set_ylabel("rejected rows")
    axis.set_title("Reject reasons by sale day")
    if reasons:
        _legend_outside(axis)
    _date_axis(axis)
    return _png(figure)


def render_charts(data: ReportData) -> dict[str, bytes]:
    """``{chart name: PNG bytes}`` for the three charts."""
    return {"daily_revenue": daily_revenue_chart(data),
            "revenue_by_category": revenue_by_category_chart(data),
            "reject_reasons": reject_reasons_chart(data)}


INLINE_CHARS = 999  # the UI's limit for showing a markdown value inline
BAR_WIDTH = 10


def _bar(value: float, largest: float) -> str:
    return "█" * max(1, round(BAR_WIDTH * value / largest)) if value > 0 and largest > 0 else ""


def bar_table(header: tuple[str, str], rows: list[tuple[str, float, str]], noun: str) -> str:
    """A markdown table ``label | figure | bar`` that fits the UI's inline limit: when all rows do
    not fit, the last ones that do, under a line saying how many are shown."""
    if not rows:
        return "_none_"
    largest = max(value for _, value, _ in rows)
    lines = [f"| {label} | {shown} | {_bar(value, largest)} |" for label, value, shown in rows]
    head = [f"| {header[0]} | {header[1]} | |", "|---|--:|---|"]
    for keep in range(len(lines), 0, -1):
        note = [] if keep == len(lines) else [f"_last {keep} of {len(lines)} {noun}_", ""]
        text = "\n".join(note + head + lines[-keep:])
        if len(text) <= INLINE_CHARS:
            return text
    return f"_{len(lines)} {noun}: see the charts_"


def _day_label(day: date, one_year: bool) -> str:
    # non-breaking spaces: the UI's narrow column must not wrap a date over two lines
    return day.strftime("%d\u00a0%b" if one_year else "%d\u00a0%b\u00a0%Y")


def revenue_by_day_table(data: ReportData) -> str:
    one_year = data.first.year == data.last.year
    rows = [(_day_label(day, one_year), float(revenue), f"{revenue:,.2f}")
            for day, (_, revenue) in sorted(data.daily.items())]
    return bar_table((f"day ({data.last.year})" if one_year else "day", "revenue"), rows, "days")


def revenue_by_category_table(data: ReportData) -> str:
    rows = [(category, float(total), f"{total:,.2f}")
            for category, total in sorted(category_totals(data).items(), key=lambda kv: -kv[1])]
    return bar_table(("category", "revenue"), rows, "categories")


def rejects_by_reason_table(data: ReportData) -> str:
    totals: dict[str, int] = defaultdict(int)
    for per in data.rejects.values():
        for reason, n in per.items():
            totals[reason] += n
    rows = [(f"`{reason}`", float(n), f"{n:,}") for reason, n in
            sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
    return bar_table(("reason", "rows"), rows, "reasons")


def category_totals(data: ReportData) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for per in data.by_category.values():
        for category, total in per.items():
            totals[category] += total
    return dict(totals)
