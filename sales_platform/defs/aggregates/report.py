"""sales_report: PNG charts in blob storage, and bar tables the asset page shows at a glance."""

import base64
from datetime import timedelta

import dagster as dg

from sales_platform.core import report
from sales_platform.core.settings import REPORT_DAYS, env_number
from sales_platform.core.warehouse.artifacts import Artifact, record_artifacts, sha256_bytes
from sales_platform.metadata import blob_kind
from sales_platform.resources.blob import BlobStorageResource
from sales_platform.resources.warehouse import WarehouseResource
from sales_platform.versioning import stage_version, versioned_asset

PREFIX = "reports/sales"
DEFAULT_DAYS = 31


def _image(title: str, png: bytes) -> str:
    # The UI renders markdown images; a data URI shows the chart without access to the blob store.
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _location(where: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(where) if where.startswith("https://") else dg.MetadataValue.path(where)


@versioned_asset(
    group_name="aggregates", owners=["team:analytics"], kinds={"png", blob_kind()},
    deps=["agg_sales_daily", "agg_sales_by_category_monthly", "sales_rejects"],
    metadata={"lineage/reads": ["table:agg_sales_daily", "table:agg_sales_by_category_monthly",
                                "table:sales_rejects"],
              "lineage/writes": [f"blob:{PREFIX}"]},
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=48)),
    description="Charts of the last SALES_PLATFORM_REPORT_DAYS days (default 31) up to the newest "
    "sale day: daily revenue and transactions, revenue by sales category and month, reject reasons "
    "by day. On this page: the figures as bar tables, then the period's totals (plotted across runs "
    "under Plots) and the charts themselves under `charts` (PNG files under "
    "`reports/sales/<last day>/` in blob storage).",
)
def sales_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                 blob: BlobStorageResource) -> dg.MaterializeResult:
    engine = warehouse.engine()
    days = int(env_number(REPORT_DAYS, DEFAULT_DAYS, 1, 3660, integer=True))
    window = report.report_window(engine, days)
    if window is None:  # nothing loaded yet: not an error for the rollups job, and nothing to draw
        return dg.MaterializeResult(metadata={"period": "no sales loaded yet", "total_revenue": 0.0,
                                              "transactions": 0, "charts": dg.MetadataValue.md("_none_")})
    data = report.read_report_data(engine, *window)
    charts = report.render_charts(data)
    folder = f"{PREFIX}/{data.last.isoformat()}"
    locations = {name: blob.put_bytes(f"{folder}/{name}.png", png) for name, png in charts.items()}
    version = stage_version(context)
    record_artifacts(engine, [
        Artifact(context.asset_key.to_user_string(), "report", locations[name], sha256_bytes(png),
                 None, version, len(png), run_id=context.run.run_id)
        for name, png in charts.items()])
    by_category = report.category_totals(data)
    revenue = data.revenue
    titles = {"daily_revenue": "Daily revenue and transactions",
              "revenue_by_category": "Revenue by sales category",
              "reject_reasons": "Reject reasons by day"}
    return dg.MaterializeResult(metadata={
        # first, so the asset page opens on them: bar tables short enough for the UI to show inline
        "revenue_by_day": dg.MetadataValue.md(report.revenue_by_day_table(data)),
        "revenue_by_category": dg.MetadataValue.md(report.revenue_by_category_table(data)),
        "rejects_by_reason": dg.MetadataValue.md(report.rejects_by_reason_table(data)),
        "period": f"{data.first} .. {data.last}",
        "days_with_sales": len(data.daily),
        "total_revenue": round(float(revenue), 2),
        "transactions": data.transactions,
        "mean_revenue_per_transaction": round(float(revenue / data.transactions), 2)
        if data.transactions else 0.0,
        "rejected_rows": data.rejected,
        "reject_rate": round(data.rejected / (data.rejected + data.transactions), 4)
        if data.rejected + data.transactions else 0.0,
        "high_category_revenue_share": round(float(by_category.get("High", 0) / sum(by_category.values())), 4)
        if sum(by_category.values()) else 0.0,
        "rejects_without_sale_day": report.rejects_without_day(engine),
        "charts": dg.MetadataValue.md("\n\n".join(_image(titles[n], charts[n]) for n in report.CHARTS)),
        **{f"blob/{name}": _location(locations[name]) for name in report.CHARTS},
    })
