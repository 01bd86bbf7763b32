"""Daily reports (tally.app.reports) and the asset event's extra (tally.app.assets), against a real Redis.

Hours go in as durable rollups (tests/support/rollups.py) through the real publisher; the
report's CSV is compared with the API's answer and with values worked out from the events.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from dashboard_api import create_app
from tally.app.assets import metrics_asset_uri, publish_extra
from tally.app.pipeline import publish_settings_hours, revised_hours
from tally.app.reports import chart, days_in_events, report_paths, write_reports
from tally.core.layout import format_hour
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.support.rollups import synthetic_events, write_synthetic_hour

SPEC = load_spec(DEFAULT_SPEC_PATH)
DAY = date(2026, 11, 26)
HOURS = [datetime(2026, 11, 26, tzinfo=UTC) + timedelta(hours=h) for h in range(24)]
EVENTS = 60
CARDS = ["revenue", "orders", "avg_order_value", "active_users", "conversion_rate"]


@pytest.fixture
def settings(tmp_path: Path, redis_server: str, layout: KeyLayout) -> Settings:
    return Settings(redis_url=redis_server, redis_prefix=layout.prefix, data_dir=tmp_path)


def publish_day(settings: Settings, hours: list[datetime], seed: int = 0) -> list[str]:
    for hour in hours:
        write_synthetic_hour(settings.data_dir, hour, SPEC, seed=seed + hour.hour, events=EVENTS)
    return publish_settings_hours(settings, hours).published


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def api_values(settings: Settings, metric: str) -> list[float | None]:
    with TestClient(create_app(settings)) as client:
        params = {"grain": "hour", "start": "2026-11-26", "end": "2026-11-27"}
        response = client.get(f"/v1/metrics/{metric}", params=params)
    assert response.status_code == 200, response.text
    [series] = response.json()["series"]
    return [point["value"] for point in series["points"]]


def purchases(seed: int) -> list[float]:
    return [e["amount"] for e in synthetic_events(seed, EVENTS) if e["event_type"] == "purchase"]


def test_days_in_events_are_the_days_of_this_prefix_hours():
    extras = [
        {"prefix": "tally", "hours": ["2026-11-26T23:00:00Z", "2026-11-27T00:00:00Z"], "revised": []},
        {"prefix": "tally", "hours": ["2026-11-25T05:00:00Z"], "revised": ["2026-11-25T05:00:00Z"]},
        {"prefix": "other", "hours": ["2026-10-01T00:00:00Z"]},  # another deployment's asset
        {},  # an event without hours (e.g. emitted by hand)
    ]
    assert days_in_events(extras, "tally") == [date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 27)]


def test_the_extra_names_the_published_and_revised_hours_and_nothing_is_announced_for_an_empty_publish():
    assert metrics_asset_uri("tally") == "tally://tally/metrics"
    published = {"published": ["2026-11-26T05:00:00Z", "2026-11-26T04:00:00Z"], "revised": ["2026-11-26T05:00:00Z"]}
    assert publish_extra("tally", published) == {
        "prefix": "tally",
        "hours": ["2026-11-26T04:00:00Z", "2026-11-26T05:00:00Z"],
        "revised": ["2026-11-26T05:00:00Z"],
        "rehydrated": 0,
    }
    assert publish_extra("tally", {"published": [], "unchanged": ["2026-11-26T04:00:00Z"], "revised": []}) is None


def test_revised_hours_are_the_published_hours_that_replaced_served_data(settings):
    publish_day(settings, HOURS[:1])  # an empty prefix is rehydrated: from then on, publishes switch
    assert publish_day(settings, HOURS[:3]) == [format_hour(h) for h in HOURS[1:3]]
    assert revised_hours(settings, [format_hour(h) for h in HOURS[1:3]]) == []
    write_synthetic_hour(settings.data_dir, HOURS[2], SPEC, seed=900, events=EVENTS)
    write_synthetic_hour(settings.data_dir, HOURS[3], SPEC, seed=901, events=EVENTS)
    published = publish_settings_hours(settings, HOURS[1:4]).published
    assert published == [format_hour(HOURS[2]), format_hour(HOURS[3])]  # hour 1 unchanged
    assert revised_hours(settings, published) == [format_hour(HOURS[2])]  # hour 3 is new, not a revision


def test_an_incomplete_day_is_not_reported(settings):
    publish_day(settings, HOURS[:23])
    run = write_reports(settings, [DAY])
    assert (run.written, run.incomplete) == ([], ["2026-11-26"])
    assert not (settings.data_dir / "reports").exists()


def test_a_complete_day_is_reported_with_the_api_values_once_and_again_after_a_revision(settings):
    publish_day(settings, HOURS)
    run = write_reports(settings, [DAY])
    assert run.written == ["2026-11-26"]
    paths = report_paths(settings.data_dir, DAY)
    assert paths["csv"] == settings.data_dir / "reports" / "2026-11-26.csv"
    rows = read_csv(paths["csv"])
    assert [r["hour"] for r in rows] == [format_hour(h) for h in HOURS]
    assert list(rows[0]) == ["hour", *CARDS]  # the default metrics: the dashboard's cards
    for metric in CARDS:
        assert [float(r[metric]) if r[metric] else None for r in rows] == api_values(settings, metric), metric
    # Worked out from the events, not through the API.
    assert [float(r["orders"]) for r in rows] == [len(purchases(h)) for h in range(24)]
    assert all(math.isclose(float(r["revenue"]), math.fsum(purchases(h))) for h, r in enumerate(rows))
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = {suffix: path.stat().st_mtime_ns for suffix, path in paths.items()}

    # Same builds: nothing is written again.
    assert write_reports(settings, [DAY]).unchanged == ["2026-11-26"]
    assert {suffix: path.stat().st_mtime_ns for suffix, path in paths.items()} == written

    # Hour 05 revised: the day is reported again, with the new value.
    write_synthetic_hour(settings.data_dir, HOURS[5], SPEC, seed=777, events=EVENTS)
    assert publish_settings_hours(settings, [HOURS[5]]).published == [format_hour(HOURS[5])]
    assert write_reports(settings, [DAY]).written == ["2026-11-26"]
    rows = read_csv(paths["csv"])
    assert float(rows[5]["orders"]) == len(purchases(777)) and float(rows[4]["orders"]) == len(purchases(4))
    assert [float(r["orders"]) for r in rows] == api_values(settings, "orders")


def test_a_configured_metric_list_is_reported_and_a_changed_list_rewrites_the_day(settings):
    publish_day(settings, HOURS)
    assert write_reports(settings, [DAY]).written == ["2026-11-26"]
    assert write_reports(settings, [DAY], ["events", "orders"]).written == ["2026-11-26"]
    rows = read_csv(report_paths(settings.data_dir, DAY)["csv"])
    assert list(rows[0]) == ["hour", "events", "orders"]
    assert {r["events"] for r in rows} == {f"{float(EVENTS)!r}"}
    with pytest.raises(ValueError, match=r"unknown metric.*no_such_metric"):
        write_reports(settings, [DAY], ["no_such_metric"])


def test_the_chart_draws_each_metric_over_the_hours_with_gaps_for_nulls():
    values = {"orders": [float(h) for h in range(24)], "revenue": [None, *(2.5 * h for h in range(1, 24))]}
    figure = chart(DAY, values)
    orders_axes, revenue_axes = figure.axes
    assert list(orders_axes.lines[0].get_xdata()) == list(range(24))
    assert list(orders_axes.lines[0].get_ydata()) == values["orders"]
    ydata = list(revenue_axes.lines[0].get_ydata())
    assert math.isnan(ydata[0]) and ydata[1:] == values["revenue"][1:]
    assert [ax.get_ylabel() for ax in figure.axes] == ["orders", "revenue"]
    assert "2026-11-26" in figure.get_suptitle()
