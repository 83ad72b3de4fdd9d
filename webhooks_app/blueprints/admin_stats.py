"""The admin's stats page: counts, success rate, throughput, latency, queue depth, oldest
pending; of every account, or of one (`?account=<slug>`)."""

from __future__ import annotations

from flask import abort, render_template, request
from flask.typing import ResponseReturnValue

from ..charts import bar_chart, column_chart
from ..filters import FilterError, parse_account
from ..stats import dashboard
from .admin import BADGES, bp

STATS_WINDOWS = (1, 3, 6, 12, 24)
# The stats page reloads itself this often: a wall display needs no clicking.
STATS_REFRESH_SECONDS = 30


@bp.get("/stats")
def stats() -> ResponseReturnValue:
    """Counts, success rate, throughput, latency, queue depth, oldest pending."""
    hours = request.args.get("hours", type=int)
    hours = hours if hours in STATS_WINDOWS else STATS_WINDOWS[0]
    account = request.args.get("account") or None
    try:
        account_id = parse_account(account)
    except FilterError as exc:
        abort(400, str(exc))
    data = dashboard(hours, account_id=account_id)
    throughput = data["throughput"]
    width = throughput["bucket_minutes"]
    unit = " events/min" if width == 1 else f" events/min (avg over {width} min)"
    charts = {
        "throughput": column_chart(
            [
                (bucket["start"][11:16], _per_minute(bucket["by_status"], width))
                for bucket in throughput["buckets"]
            ],
            label=f"Events received per minute by status, last {hours} h",
            unit=unit,
            classes=BADGES,
        ),
        "statuses": bar_chart(
            [(status, count, BADGES[status]) for status, count in data["events"].items()],
            label="Events by status",
        ),
        "latency": bar_chart(
            [
                (name, value, "latency")
                for name, value in data["latency"].items()
                if name != "sample" and value is not None
            ],
            label="Receipt to success, seconds",
            unit=" s",
        ),
    }
    return render_template(
        "admin/stats.html",
        data=data,
        charts=charts,
        hours=hours,
        account=account,
        windows=STATS_WINDOWS,
        refresh_seconds=STATS_REFRESH_SECONDS,
    )


def _per_minute(counts: dict[str, int], width: int) -> dict[str, float]:
    return {status: count / width for status, count in counts.items()}
