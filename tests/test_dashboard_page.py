"""The dashboard page (`/`) in a real headless Chromium, against real data served by `tally serve`.

Sample events for the two weeks before the current hour (what `make demo` publishes)
go through the real Spark job and publisher into a Redis prefix of this module's own;
`tally serve` serves them; Debian's chromium, driven by selenium through the system
chromedriver (tests/support/browser.py, the `browser` fixture), loads the page. What
the page drew (its uPlot data, its cards, its filter choices) must equal what the API
answers for the same queries, gaps and incomplete buckets included.

Needs /usr/bin/chromium and /usr/bin/chromedriver: `scripts/install-chromium`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from bench.server import start_server, stop
from cache.freshness import INPUT_CHANGED, mark_pending
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from dashboard_api import create_app
from dashboard_api.calendar import first_fractional_offset
from dashboard_api.page import STATIC_DIR
from jobs.hourly import run_hours
from tally.app.generate import generate
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import ROOT, TEST_PREFIX, delete_prefix
from tests.support.browser import RESOURCE_URLS_JS, console_errors
from tests.support.net import free_port

SPEC = load_spec(DEFAULT_SPEC_PATH)
SCREENSHOT = ROOT / "docs" / "dashboard.png"
DAYS = 14  # as `make demo` (tally/app/demo.py DEMO_DAYS)
HEADLINE = ("revenue", "orders", "avg_order_value", "active_users", "conversion_rate")
TOKEN = "page-test-token"
ONE_HOUR = timedelta(hours=1)

# What the page exposes in window.tallyDashboard, as plain JSON (uPlot's own data arrays included).
SNAPSHOT_JS = """
const d = window.tallyDashboard;
const charts = {};
for (const [name, c] of Object.entries(d.charts)) {
  charts[name] = {query: c.query, labels: c.series.map(s => s.label), message: c.message || null,
                  plotted: c.plot ? c.plot.data : null,
                  canvas: c.plot ? c.plot.root.querySelector("canvas").width : 0};
}
const cards = {};
for (const el of document.querySelectorAll(".card")) {
  const record = d.cards[el.dataset.metric];
  cards[el.dataset.metric] = {value: record.value, previous: record.previous, complete: record.complete,
                              queries: record.queries, text: el.querySelector(".value").textContent,
                              change: el.querySelector(".change").textContent, dataValue: el.dataset.value};
}
return JSON.stringify({state: d.state, problems: d.problems, cards, charts,
                       badge: {...document.getElementById("freshness").dataset},
                       text: document.body.innerText});
"""


@dataclass(frozen=True)
class Served:
    base: str
    client: redis.Redis
    layout: KeyLayout
    hours: list[datetime]  # the published hours, oldest first
    data_dir: Path  # their rollups, for publishing some of them under another prefix

    @property
    def anchor(self) -> datetime:
        """The end of the newest published hour: every range of the page ends there."""
        return self.hours[-1] + ONE_HOUR


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def served(spark, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The two weeks before the current hour through the real job and publisher, under a prefix of this
    module's own, served by `tally serve` (hours taken now, so the data is fresh whenever the module runs)."""
    current_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [current_hour - ONE_HOUR * i for i in range(DAYS * 24, 0, -1)]
    data_dir = tmp_path_factory.mktemp("dashboard-data")
    generate(data_dir, hours[0].date(), days=DAYS + 1, events_per_hour=120, seed=5, progress=False)
    report = run_hours(spark, data_dir, SPEC, hours)
    assert not report.failed, report.failed
    client = redis.Redis.from_url(redis_server)
    layout = KeyLayout(f"{TEST_PREFIX}-page-{uuid.uuid4().hex[:12]}")
    server = None
    try:
        publish_hours(client, layout, data_dir, SPEC, hours, PublishOptions(superseded_ttl=60))
        port = free_port()
        server = start_server(redis_server, layout.prefix, port)
        yield Served(f"http://127.0.0.1:{port}", client, layout, hours, data_dir)
    finally:
        stop(server)
        delete_prefix(client, layout)
        client.close()


def open_page(browser: webdriver.Chrome, url: str) -> dict[str, Any]:
    """Load the page, wait until every card and chart is drawn, and return what it shows."""
    browser.get_log("browser")  # only this page's console messages count
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.tallyDashboard?.ready"))
    return json.loads(browser.execute_script(SNAPSHOT_JS))


def api_series(base: str, name: str, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/v1/metrics/{name}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def catalogue(base: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base}/v1/metrics").json()["metrics"]


def plotted_from(body: dict[str, Any]) -> list[list[Any]]:
    """The uPlot data the page must draw for an API answer: bucket starts (epoch seconds), then each series."""
    points = body["series"][0]["points"]
    xs = [int(datetime.fromisoformat(p["ts"].replace("Z", "+00:00")).timestamp()) for p in points]
    return [xs, *[[p["value"] for p in s["points"]] for s in body["series"]]]


def card_queries(anchor: datetime, days: int, **filters: str) -> tuple[dict[str, str], dict[str, str]]:
    """The cards' two periods: the `days` ending at the anchor, and the same length before."""
    base = {"grain": "hour", "tz": "UTC", "window": f"{days}d", **filters}
    previous_end = anchor - timedelta(days=days)
    return (
        {**base, "start": iso(anchor - ONE_HOUR), "end": iso(anchor)},
        {**base, "start": iso(previous_end - ONE_HOUR), "end": iso(previous_end)},
    )


def test_the_page_and_its_assets_are_served_outside_the_api_schema(redis_server: str) -> None:
    with TestClient(create_app(Settings(redis_url=redis_server, redis_prefix=f"{TEST_PREFIX}-page-static"))) as api:
        page = api.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for asset in ("dashboard.js", "dashboard.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
            assert f'"static/{asset}"' in page.text, asset
            response = api.get(f"/static/{asset}")
            assert response.status_code == 200 and response.content == (STATIC_DIR / asset).read_bytes(), asset
        assert api.head("/static/dashboard.js").status_code == 200
        missing = api.get("/static/nothing.js")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        paths = api.get("/openapi.json").json()["paths"]
        assert "/v1/metrics" in paths and "/" not in paths and not any(p.startswith("/static") for p in paths)
    # The vendored uPlot is the version its README names.
    version = re.search(r"\(v([0-9.]+)\)", (STATIC_DIR / "vendor" / "uPlot.iife.min.js").read_text()[:200])
    assert version and f"| {version.group(1)} |" in (STATIC_DIR / "vendor" / "README.md").read_text()


def test_cards_and_charts_show_the_apis_numbers(served: Served, browser: webdriver.Chrome, tmp_path: Path) -> None:
    page = open_page(browser, f"{served.base}/?range=1d&grain=hour&tz=UTC")

    health = httpx.get(f"{served.base}/health").json()
    assert health["newest_hour"] == iso(served.hours[-1])
    assert page["badge"]["newestHour"] == health["newest_hour"] and page["badge"]["status"] == "fresh"

    current, previous = card_queries(served.anchor, 1)
    assert list(page["cards"]) == list(HEADLINE)
    for name in HEADLINE:
        card = page["cards"][name]
        [now_point] = api_series(served.base, name, **current)["series"][0]["points"]
        [before_point] = api_series(served.base, name, **previous)["series"][0]["points"]
        assert card["queries"] == {"current": current, "previous": previous}
        assert (card["value"], card["previous"], card["complete"]) == (
            now_point["value"],
            before_point["value"],
            now_point["complete"],
        )
        assert now_point["complete"] and now_point["value"] > 0
        assert float(card["dataValue"]) == now_point["value"]
        assert "%" in card["change"] or "pp" in card["change"], card
    orders = page["cards"]["orders"]
    assert re.sub(r"\D", "", orders["text"]) == str(orders["value"])  # drawn as text too, not only stored

    day_before = served.anchor - timedelta(days=1)
    chart_range = {"grain": "hour", "tz": "UTC", "start": iso(day_before), "end": iso(served.anchor)}
    for metric in catalogue(served.base):
        chart = page["charts"][metric["name"]]
        if "hour" not in metric["grains"]:
            assert chart["plotted"] is None and "grain only" in chart["message"]
            continue
        body = api_series(served.base, metric["name"], **chart_range)
        assert chart["query"] == chart_range
        assert chart["plotted"] == plotted_from(body), metric["name"]
        assert len(chart["plotted"][0]) == 24 and chart["canvas"] > 0
    assert not page["problems"] and not console_errors(browser)

    shot = tmp_path / "dashboard.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    if os.environ.get("TALLY_UPDATE_SCREENSHOT") == "1":  # the README's picture, refreshed on request
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_a_split_in_another_time_zone_plots_every_series(served: Served, browser: webdriver.Chrome) -> None:
    page = open_page(browser, f"{served.base}/?range=1d&grain=hour&tz=America/New_York&group_by=platform")
    query = {
        "grain": "hour",
        "tz": "America/New_York",
        "start": iso(served.anchor - timedelta(days=1)),
        "end": iso(served.anchor),
        "group_by": "platform",
        "limit": "5",
    }
    for name in ("revenue", "active_users", "conversion_rate"):
        body = api_series(served.base, name, **query)
        chart = page["charts"][name]
        assert chart["query"] == query
        assert chart["labels"] == [s["labels"]["platform"] if not s["other"] else "Other" for s in body["series"]]
        assert len(chart["labels"]) >= 2
        assert chart["plotted"] == plotted_from(body)
    # A filter on a dimension a metric lacks: that card and chart say so, and nothing asks the API for it.
    page = open_page(browser, f"{served.base}/?range=1d&grain=hour&event_type=purchase")
    assert page["charts"]["revenue"]["message"] == "Not sliced by event_type."
    assert page["cards"]["revenue"]["change"] == "not sliced by event_type"
    events = api_series(served.base, "events", **page["charts"]["events"]["query"])
    assert page["charts"]["events"]["query"]["event_type"] == "purchase"
    assert page["charts"]["events"]["plotted"] == plotted_from(events)
    assert not console_errors(browser)


def test_null_and_incomplete_buckets_render_as_gaps_without_errors(served: Served, browser: webdriver.Chrome) -> None:
    # 30 days over two weeks of data: the first half of the range has none.
    newest_day = served.hours[-1].astimezone(ZoneInfo("America/New_York")).date()
    query = {
        "grain": "day",
        "tz": "America/New_York",
        "start": (newest_day - timedelta(days=29)).isoformat(),
        "end": (newest_day + timedelta(days=1)).isoformat(),
        "platform": "web",
    }
    current, _ = card_queries(served.anchor, 30, platform="web")
    pending_hour = served.hours[-3]  # as if a late file had been found for it
    mark_pending(served.client, served.layout, [pending_hour], {pending_hour: INPUT_CHANGED})
    try:
        page = open_page(browser, f"{served.base}/?range=30d&grain=day&tz=America/New_York&platform=web")
        for name in HEADLINE:
            body = api_series(served.base, name, **query)
            points = body["series"][0]["points"]
            assert page["charts"][name]["query"] == query
            assert page["charts"][name]["plotted"] == plotted_from(body), name
            assert points[0]["value"] is None  # days before the data: a gap, not 0
            assert any(p["value"] is not None and not p["complete"] for p in points)  # shaded as incomplete
            card = page["cards"][name]
            [point] = api_series(served.base, name, **current)["series"][0]["points"]
            assert (card["value"], card["complete"]) == (point["value"], False)
            assert card["previous"] is None and "no data for the prior 30 days" in card["change"]
            assert "incomplete" in card["change"]
    finally:
        mark_pending(served.client, served.layout, [pending_hour], {})
    assert "NaN" not in page["text"] and "undefined" not in page["text"]
    assert not page["problems"] and not console_errors(browser)


def test_with_a_token_the_page_loads_and_asks_for_it(
    served: Served, browser: webdriver.Chrome, redis_server: str
) -> None:
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TALLY_API_TOKEN", TOKEN)
        server = start_server(redis_server, served.layout.prefix, port)
    base = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(f"{base}/v1/metrics").status_code == 401
        for path in ("/", "/static/dashboard.js", "/static/vendor/uPlot.iife.min.js"):
            assert httpx.get(f"{base}{path}").status_code == 200, path
        page = open_page(browser, f"{base}/?range=1d&grain=hour")
        assert [p["code"] for p in page["problems"]] == ["unauthorized"]
        assert browser.find_element(By.ID, "token-form").is_displayed()

        page = open_page(browser, f"{base}/?token={TOKEN}&range=1d&grain=hour")
        assert "token" not in browser.current_url  # taken out of the address bar and history
        assert browser.execute_script("return localStorage.getItem('tally.apiToken')") == TOKEN
        assert not page["problems"]
        [point] = api_series(served.base, "revenue", **card_queries(served.anchor, 1)[0])["series"][0]["points"]
        assert page["cards"]["revenue"]["value"] == point["value"]
    finally:
        stop(server)


@pytest.mark.parametrize("grain", ["week", "month"])
def test_week_and_month_charts_ask_for_bounds_the_api_accepts(
    served: Served, browser: webdriver.Chrome, grain: str
) -> None:
    # The page's one copy of the API's calendar (static/ranges.js bucketStart): its bounds must start
    # buckets as the API counts them, and its buckets must cover the range's days up to the newest hour.
    page = open_page(browser, f"{served.base}/?range=90d&grain={grain}&tz=Europe/Berlin")
    first_day = served.hours[-1].astimezone(ZoneInfo("Europe/Berlin")).date() - timedelta(days=89)
    charted = [m["name"] for m in catalogue(served.base) if grain in m["grains"]]
    assert set(HEADLINE) <= set(charted)
    for name in charted:
        chart = page["charts"][name]
        assert chart["query"]["grain"] == grain and chart["message"] is None, name
        body = api_series(served.base, name, **chart["query"])
        assert chart["plotted"] == plotted_from(body), name
        starts = [datetime.fromisoformat(p["ts"]) for p in body["series"][0]["points"]]
        assert starts[0].date() <= first_day < starts[1].date(), name
        assert starts[-1] <= served.hours[-1] < datetime.fromisoformat(body["end"]), name
    assert not page["problems"] and not console_errors(browser)


def valued(series: list[Any]) -> list[Any]:
    return [value for value in series if value is not None]


def test_the_default_view_draws_a_line_in_every_chart(served: Served, browser: webdriver.Chrome) -> None:
    page = open_page(browser, f"{served.base}/")
    assert page["state"] == {"range": "7d", "grain": "day", "tz": "UTC", "groupBy": "", "filters": {}}
    assert page["badge"]["status"] == "fresh"  # the newest hour ended less than an hour ago
    newest_day = served.hours[-1].date()
    days = {"start": (newest_day - timedelta(days=6)).isoformat(), "end": (newest_day + timedelta(days=1)).isoformat()}
    for metric in catalogue(served.base):
        chart = page["charts"][metric["name"]]
        assert chart["query"] == {"grain": "day", "tz": "UTC", **days}, metric["name"]
        assert chart["plotted"] == plotted_from(api_series(served.base, metric["name"], **chart["query"]))
        xs, values = chart["plotted"]
        assert len(xs) == 7 and len(valued(values)) > 1, (metric["name"], values)  # a line, not a dot
    assert not page["problems"] and not console_errors(browser)


def test_a_cache_holding_only_an_older_day_opens_on_it(
    served: Served, browser: webdriver.Chrome, redis_server: str
) -> None:
    day = served.hours[-1].date() - timedelta(days=7)
    hours = [hour for hour in served.hours if hour.date() == day]
    layout = KeyLayout(f"{TEST_PREFIX}-page-old-{uuid.uuid4().hex[:12]}")
    publish_hours(served.client, layout, served.data_dir, SPEC, hours, PublishOptions(superseded_ttl=60))
    port = free_port()
    server = start_server(redis_server, layout.prefix, port)
    base = f"http://127.0.0.1:{port}"
    try:
        page = open_page(browser, f"{base}/")
        health = httpx.get(f"{base}/health").json()
        assert health["newest_hour"] == iso(hours[-1]) and health["status"] == "stale"
        assert page["badge"]["status"] == "stale"
        current, _ = card_queries(hours[-1] + ONE_HOUR, 7)
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        for name in HEADLINE:
            chart = page["charts"][name]
            assert chart["query"]["end"] == (day + timedelta(days=1)).isoformat()  # the range ends on that day
            xs, values = chart["plotted"]
            on_the_day = values[xs.index(midnight)]
            assert on_the_day is not None and valued(values) == [on_the_day], name
            [point] = api_series(base, name, **current)["series"][0]["points"]
            assert point["value"] is not None and page["cards"][name]["value"] == point["value"], name
        assert not page["problems"]
    finally:
        stop(server)
        delete_prefix(served.client, layout)


def fractional_somewhere(zone: str, anchor: datetime) -> bool:
    """Whether the API refuses ``zone`` for the 7-day view by day ending at ``anchor`` (its own rule)."""
    tz = ZoneInfo(zone)
    newest_day = (anchor - ONE_HOUR).astimezone(tz).date()
    start = datetime.combine(newest_day - timedelta(days=6), datetime.min.time(), tzinfo=tz)
    end = datetime.combine(newest_day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return first_fractional_offset(tz, start.astimezone(UTC), end.astimezone(UTC)) is not None


def test_the_zone_picker_offers_exactly_the_zones_the_api_serves(served: Served, browser: webdriver.Chrome) -> None:
    open_page(browser, f"{served.base}/?range=7d&grain=day&tz=Europe/Berlin")
    offered = browser.execute_script("return [...document.querySelectorAll('#tz option')].map(o => o.value)")
    every = browser.execute_script("return Intl.supportedValuesOf('timeZone')")
    assert offered[0] == "UTC" and browser.find_element(By.ID, "tz").get_attribute("value") == "Europe/Berlin"
    assert {"Europe/Berlin", "America/New_York", "Asia/Tokyo"} <= set(offered)
    assert not {"Asia/Kolkata", "Asia/Calcutta", "Asia/Kathmandu", "Asia/Katmandu", "America/St_Johns"} & set(offered)
    refused = {zone for zone in every if fractional_somewhere(zone, served.anchor)}
    assert {"Australia/Adelaide", "Asia/Tehran"} <= refused
    assert set(offered) == {"UTC", *every} - refused


# Makes the page's API calls with tz=Europe/Berlin answer as the API does for a zone it refuses.
REFUSE_BERLIN_JS = """
const realFetch = window.fetch;
window.fetch = (input, init) => {
  const url = new URL(input, document.baseURI);
  if (url.pathname.startsWith("/v1/metrics/") && url.searchParams.get("tz") === "Europe/Berlin") {
    const error = {code: "unsupported_timezone", message: "tz: Europe/Berlin is not served here"};
    const headers = {"Content-Type": "application/json"};
    return Promise.resolve(new Response(JSON.stringify({error}), {status: 400, headers}));
  }
  return realFetch(input, init);
};
"""


def assert_shown_in_utc(page: dict[str, Any], browser: webdriver.Chrome, base: str) -> None:
    """Every card and chart drew, in UTC, with the API's numbers; the only notice is the zone's."""
    assert page["state"]["tz"] == "UTC" and "tz=UTC" in browser.current_url
    assert browser.find_element(By.ID, "tz").get_attribute("value") == "UTC"
    assert not browser.find_elements(By.CSS_SELECTOR, ".panel.failed")
    for name, chart in page["charts"].items():
        assert chart["message"] is None and chart["query"]["tz"] == "UTC", name
        assert chart["plotted"] == plotted_from(api_series(base, name, **chart["query"])), name
    for name, card in page["cards"].items():
        assert card["queries"]["current"]["tz"] == "UTC" and card["value"] is not None, name
    assert not page["problems"]


def test_a_fractional_zone_in_the_link_shows_utc_with_one_notice(served: Served, browser: webdriver.Chrome) -> None:
    page = open_page(browser, f"{served.base}/?range=7d&grain=day&tz=Asia/Kolkata")
    notice = browser.find_element(By.ID, "notice")
    assert notice.is_displayed() and notice.text == (
        "Asia/Kolkata is UTC+05:30, not a whole number of hours from UTC; "
        "Tally's buckets start at whole UTC hours. Showing UTC."
    )
    assert_shown_in_utc(page, browser, served.base)
    assert not [url for url in browser.execute_script(RESOURCE_URLS_JS) if "Kolkata" in url]  # never asked
    assert not console_errors(browser)
    # Picking another zone is a new view: the notice goes.
    Select(browser.find_element(By.ID, "tz")).select_by_value("America/New_York")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return window.tallyDashboard.ready"))
    assert not notice.is_displayed()


def test_a_zone_the_api_refuses_shows_utc_with_one_notice(served: Served, browser: webdriver.Chrome) -> None:
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": REFUSE_BERLIN_JS})
    try:
        page = open_page(browser, f"{served.base}/?range=7d&grain=day&tz=Europe/Berlin")
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
    assert browser.find_element(By.ID, "notice").text == (
        "The API refused time zone Europe/Berlin: tz: Europe/Berlin is not served here. Showing UTC."
    )
    assert_shown_in_utc(page, browser, served.base)


def test_filter_choices_are_the_values_endpoints_most_common_first(served: Served, browser: webdriver.Chrome) -> None:
    page = open_page(browser, f"{served.base}/?range=7d&grain=day&tz=America/New_York&platform=web")
    choices = browser.execute_script(
        "const out = {};"
        "for (const s of document.querySelectorAll('#filters select')) out[s.dataset.dimension] = "
        "  [...s.options].map(o => o.value);"
        "return out;"
    )
    query = page["charts"]["events"]["query"]
    by_count: dict[str, list[str]] = {}
    for dim in ("event_type", "country", "platform"):
        response = httpx.get(
            f"{served.base}/v1/metrics/events/values/{dim}", params={k: query[k] for k in ("tz", "start", "end")}
        )
        assert response.status_code == 200, response.text
        values = response.json()["values"]
        by_count[dim] = [v["value"] for v in sorted(values, key=lambda v: -v["count"])]
        assert choices[dim] == ["", *by_count[dim][:50]], dim
    assert any(order != sorted(order) for order in by_count.values())  # count order, not the endpoint's
    assert browser.find_element(By.CSS_SELECTOR, "select[data-dimension='platform']").get_attribute("value") == "web"
    fetched = browser.execute_script(RESOURCE_URLS_JS)
    assert any("/v1/metrics/events/values/country?" in url for url in fetched)
    assert not any("group_by=country" in url for url in fetched)  # no longer read as a split
    assert not console_errors(browser)


TIER_DAYS = 3  # a short hour tier, so the module's two weeks reach well beyond it


@pytest.fixture(scope="module")
def tiered(served: Served, redis_server: str) -> Iterator[str]:
    """The same hours under a prefix whose Redis keeps only TIER_DAYS of them (older days moved to
    their day aggregates), served by `tally serve` with that retention."""
    layout = KeyLayout(f"{TEST_PREFIX}-page-tiers-{uuid.uuid4().hex[:12]}")
    options = PublishOptions(superseded_ttl=60, hour_retention_days=TIER_DAYS)
    publish_hours(served.client, layout, served.data_dir, SPEC, served.hours, options)
    assert len(served.client.hkeys(layout.pointer())) < (TIER_DAYS + 1) * 24  # days did move
    port = free_port()
    server = start_server(redis_server, layout.prefix, port, {"TALLY_HOUR_RETENTION_DAYS": str(TIER_DAYS)})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)
        delete_prefix(served.client, layout)


def test_beyond_the_hour_tier_the_page_offers_days_and_utc_only(
    served: Served, tiered: str, browser: webdriver.Chrome
) -> None:
    health = httpx.get(f"{tiered}/health").json()
    assert health["oldest_hour"] is not None
    # A week at hour grain in New York: hours and local days reach before the tier; days in UTC are shown.
    page = open_page(browser, f"{tiered}/?range=7d&grain=hour&tz=America/New_York")
    assert page["state"]["grain"] == "day" and page["state"]["tz"] == "UTC"
    assert browser.find_element(By.ID, "notice").is_displayed()
    assert browser.execute_script("return document.querySelector('#grain option[value=hour]').disabled")
    assert not page["problems"] and not console_errors(browser)
    for name in ("events", "active_users"):
        chart = page["charts"][name]
        assert chart["query"]["grain"] == "day" and chart["query"]["tz"] == "UTC"
        assert chart["plotted"] == plotted_from(api_series(tiered, name, **chart["query"]))
    # The cards compare the week ending at the last UTC midnight with the one before, as whole days.
    midnight = served.anchor.replace(hour=0)
    current = {"grain": "day", "tz": "UTC", "window": "7d"}
    current |= {"start": f"{midnight - timedelta(days=1):%Y-%m-%d}", "end": f"{midnight:%Y-%m-%d}"}
    for name in HEADLINE:
        card = page["cards"][name]
        assert card["queries"]["current"] == current
        [point] = api_series(tiered, name, **current)["series"][0]["points"]
        # The same days' answer as the untiered prefix gives: the move changed no day.
        [untiered] = api_series(served.base, name, **current)["series"][0]["points"]
        assert card["value"] == point["value"] == untiered["value"] and card["complete"]
    # The last 24 hours lie inside the tier: hour grain and hourly cards as usual.
    page = open_page(browser, f"{tiered}/?range=1d&grain=hour")
    assert page["state"]["grain"] == "hour" and not page["problems"]
    assert page["cards"]["revenue"]["queries"]["current"] == card_queries(served.anchor, 1)[0]
    assert not browser.execute_script("return document.querySelector('#grain option[value=hour]').disabled")
