"""The dashboard's sketch panels in a real headless Chromium: the percentile chart and its q picker,
the retention heat map and the funnel, against `tally serve`'s own answers.

Seventeen days of members who join and drift away (tests/support/sketch_events.py) are written as
rollups without Spark, published into a Redis prefix of this module's own by the rehydrate, and
served by `tally serve`. Each test reads the page (its DOM and window.tallyDashboard), asks the API
the same question, and requires the page to show exactly that answer.

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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from selenium import webdriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from bench.server import start_server, stop
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.rehydrate import rehydrate
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, delete_prefix
from tests.support.browser import RESOURCE_URLS_JS, VIEWPORT, console_errors
from tests.support.net import free_port
from tests.support.sketch_events import write_member_hours

SPEC = load_spec(DEFAULT_SPEC_PATH)
DAYS = 17  # more than two weeks: the 30-day view's first weekly cohorts have no data, the later ones do
ONE_HOUR = timedelta(hours=1)
QUANTILE = "order_value_p95"  # the default spec's quantile metric (q 0.95)
STEPS = "viewers,carters,buyers"  # the default spec's theta metrics after the retention's two

# What the sketch panels show, read from the DOM (and the queries from window.tallyDashboard).
SNAPSHOT_JS = """
const d = window.tallyDashboard;
const data = (el, key) => (el && el.dataset[key] !== "" ? el.dataset[key] : null);
const quantiles = {};
for (const select of document.querySelectorAll("select[data-quantile]")) {
  const c = d.charts[select.dataset.quantile];
  const panel = select.closest(".panel");
  quantiles[select.dataset.quantile] = {
    picked: select.value, options: [...select.options].map(o => o.value), query: c.query, q: c.q,
    plotted: c.plot ? c.plot.data : null, status: panel.querySelector(".status").textContent};
}
const heat = document.querySelector('.panel[data-panel="retention"]');
const retention = d.retention && {
  query: d.retention.query, message: d.retention.message, failed: heat.classList.contains("failed"),
  text: heat.querySelector(".plot").textContent,
  headers: [...heat.querySelectorAll("thead th")].map(th => th.textContent),
  rows: [...heat.querySelectorAll("tbody tr")].map(tr => ({
    start: tr.dataset.start, label: tr.querySelector("th").textContent,
    size: data(tr.querySelector("td.size"), "size"), sizeText: tr.querySelector("td.size").textContent,
    sizeIncomplete: tr.querySelector("td.size").classList.contains("incomplete"),
    cells: [...tr.querySelectorAll("td.rate")].map(td => ({
      offset: Number(td.dataset.offset), rate: data(td, "rate"), value: data(td, "value"), text: td.textContent,
      blank: td.classList.contains("none"), incomplete: td.classList.contains("incomplete"),
      background: getComputedStyle(td).backgroundColor}))}))};
const bars = document.querySelector('.panel[data-panel="funnel"]');
const funnel = d.funnel && {
  query: d.funnel.query, message: d.funnel.message, bucket: d.funnel.bucket,
  caption: bars.querySelector(".funnel-day") ? bars.querySelector(".funnel-day").textContent : null,
  steps: [...bars.querySelectorAll("li.step")].map(li => ({
    metric: li.dataset.metric, value: data(li, "value"), name: li.querySelector(".name").textContent,
    valueText: li.querySelector(".value").textContent, fromFirst: li.querySelector(".from-first").textContent,
    fromPrevious: li.querySelector(".from-previous") ? li.querySelector(".from-previous").textContent : null,
    fill: li.querySelector(".bar i").getBoundingClientRect().width,
    track: li.querySelector(".bar").getBoundingClientRect().width}))};
return JSON.stringify({state: d.state, problems: d.problems, quantiles, retention, funnel,
                       sketchesHidden: document.getElementById("sketches").hidden});
"""


@dataclass(frozen=True)
class Served:
    base: str
    hours: list[datetime]  # the published hours, oldest first

    @property
    def anchor(self) -> datetime:
        """The end of the newest published hour: every range of the page ends there."""
        return self.hours[-1] + ONE_HOUR

    def newest_day(self, tz: str) -> date:
        return self.hours[-1].astimezone(ZoneInfo(tz)).date()


@pytest.fixture(scope="module")
def served(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """DAYS of member hours up to the current one, as rollups (no Spark), rehydrated into a prefix of this
    module's own and served by `tally serve` (hours taken now, so the data is fresh whenever the module runs)."""
    current_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [current_hour - ONE_HOUR * i for i in range(DAYS * 24, 0, -1)]
    data_dir = tmp_path_factory.mktemp("sketch-dashboard")
    write_member_hours(data_dir, SPEC, hours, seed=16, population=600)
    client = redis.Redis.from_url(redis_server)
    layout = KeyLayout(f"{TEST_PREFIX}-sketches-{uuid.uuid4().hex[:12]}")
    server = None
    try:
        assert rehydrate(client, layout, data_dir, SPEC, PublishOptions(superseded_ttl=60)) == len(hours)
        port = free_port()
        server = start_server(redis_server, layout.prefix, port)
        yield Served(f"http://127.0.0.1:{port}", hours)
    finally:
        stop(server)
        delete_prefix(client, layout)
        client.close()


def wait_ready(browser: webdriver.Chrome) -> dict[str, Any]:
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.tallyDashboard?.ready"))
    return json.loads(browser.execute_script(SNAPSHOT_JS))


def open_page(browser: webdriver.Chrome, url: str) -> dict[str, Any]:
    """Load the page, wait until every panel is drawn, and return what the sketch panels show."""
    browser.get_log("browser")  # only this page's console messages count
    browser.get(url)
    return wait_ready(browser)


def api_get(base: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    response = httpx.get(f"{base}/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def plotted_from(body: dict[str, Any]) -> list[list[Any]]:
    """The uPlot data the page must draw for a series answer: bucket starts (epoch seconds), then each series."""
    points = body["series"][0]["points"]
    xs = [int(datetime.fromisoformat(p["ts"].replace("Z", "+00:00")).timestamp()) for p in points]
    return [xs, *[[p["value"] for p in s["points"]] for s in body["series"]]]


def shown_percent(text: str) -> float:
    """ "37.0%" -> 37.0 (the page rounds the API's rate to one decimal)."""
    match = re.fullmatch(r"(\d+\.\d)%", text)
    assert match, text
    return float(match.group(1))


def alpha(css_color: str) -> float:
    """The opacity of a computed rgb()/rgba() colour."""
    parts = re.findall(r"[\d.]+", css_color)
    return float(parts[3]) if len(parts) == 4 else 1.0


def wait_for_q(browser: webdriver.Chrome, name: str, q: str) -> dict[str, Any]:
    """What the percentile chart shows once it drew the API's answer for ``q``."""
    script = f"return window.tallyDashboard.charts[{json.dumps(name)}].q === {q}"
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(script))
    quantiles: dict[str, Any] = wait_ready(browser)["quantiles"]
    return quantiles[name]


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def request_count(browser: webdriver.Chrome, fragment: str) -> int:
    return sum(fragment in url for url in browser.execute_script(RESOURCE_URLS_JS))


def test_the_percentile_chart_draws_the_apis_answer_for_the_q_picked(served: Served, browser: webdriver.Chrome) -> None:
    metrics = {m["name"]: m for m in httpx.get(f"{served.base}/v1/metrics").json()["metrics"]}
    quantiles = [name for name, m in metrics.items() if m["kind"] == "quantile"]
    page = open_page(browser, f"{served.base}/?range=7d&grain=day&tz=UTC")
    assert list(page["quantiles"]) == quantiles and QUANTILE in quantiles  # one picker per quantile metric
    newest = served.newest_day("UTC")
    days = {"grain": "day", "tz": "UTC", "start": f"{newest - timedelta(days=6)}", "end": f"{newest + timedelta(1)}"}

    chart = page["quantiles"][QUANTILE]
    assert metrics[QUANTILE]["q"] == 0.95
    assert chart["picked"] == "0.95" and {"0.5", "0.9", "0.95", "0.99"} <= set(chart["options"])
    # At the spec's q the chart asks what a plain chart would; the API's answer names the q it used.
    assert chart["query"] == days
    default = api_get(served.base, f"v1/metrics/{QUANTILE}", days)
    assert default["q"] == chart["q"] == 0.95 and chart["status"].startswith("p95 of each bucket")
    assert chart["plotted"] == plotted_from(default)
    assert len([v for v in chart["plotted"][1] if v is not None]) == 7

    others_before = request_count(browser, "/v1/metrics/revenue?")
    picked: dict[str, list[Any]] = {}
    for q in ("0.99", "0.5"):
        Select(browser.find_element("css selector", f"select[data-quantile='{QUANTILE}']")).select_by_value(q)
        chart = wait_for_q(browser, QUANTILE, q)
        body = api_get(served.base, f"v1/metrics/{QUANTILE}", {**days, "q": q})
        assert chart["query"] == {**days, "q": q} and body["q"] == float(q)
        assert chart["plotted"] == plotted_from(body), q
        assert chart["status"].startswith(f"p{round(float(q) * 100)} of each bucket")
        picked[q] = chart["plotted"][1]
    # A higher percentile is a higher line: the picks really drew different answers.
    pairs = [(hi, lo) for hi, lo in zip(picked["0.99"], picked["0.5"], strict=True) if hi is not None]
    assert pairs and all(hi >= lo for hi, lo in pairs) and any(hi > lo for hi, lo in pairs)
    assert request_count(browser, "/v1/metrics/revenue?") == others_before  # only the percentile chart asked

    # The pick holds across a view change, which draws it at the new grain.
    Select(browser.find_element("css selector", "#grain")).select_by_value("week")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return window.tallyDashboard.state.grain === 'week'"))
    chart = wait_ready(browser)["quantiles"][QUANTILE]
    assert chart["picked"] == "0.5" and chart["query"]["q"] == "0.5" and chart["query"]["grain"] == "week"
    assert chart["plotted"] == plotted_from(api_get(served.base, f"v1/metrics/{QUANTILE}", chart["query"]))
    page = wait_ready(browser)
    assert not page["problems"] and not console_errors(browser)


def expected_retention(served: Served, range_key: str, tz: str) -> dict[str, str]:
    """The page's rule: daily cohorts over the last 7 local days for ranges up to a week (6 offsets),
    weekly cohorts over the ISO weeks of the range's days beyond (4 offsets for 30 days)."""
    newest = served.newest_day(tz)
    base = {"cohort": "new_users", "returning": "returning_users", "tz": tz}
    if range_key in ("1d", "7d"):
        days = {"start": f"{newest - timedelta(days=6)}", "end": f"{newest + timedelta(days=1)}"}
        return {**base, "grain": "day", **days, "periods": "6"}
    first = newest - timedelta(days=29)
    weeks = {"start": f"{monday(first)}", "end": f"{monday(newest) + timedelta(days=7)}"}
    return {**base, "grain": "week", **weeks, "periods": "4"}


@pytest.mark.parametrize(("range_key", "tz"), [("7d", "UTC"), ("30d", "America/New_York")])
def test_the_retention_heat_map_shows_the_apis_cohorts(
    served: Served, browser: webdriver.Chrome, range_key: str, tz: str
) -> None:
    page = open_page(browser, f"{served.base}/?range={range_key}&tz={tz}")
    heat = page["retention"]
    query = expected_retention(served, range_key, tz)
    assert heat["query"] == query and heat["message"] is None
    body = api_get(served.base, "v1/retention", query)
    periods = int(query["periods"])
    word = "Day" if query["grain"] == "day" else "Week"
    assert heat["headers"] == ["Cohort", "Users", *[f"{word} {k}" for k in range(periods + 1)]]
    assert [row["start"] for row in heat["rows"]] == [c["start"] for c in body["cohorts"]]

    rates: list[tuple[float, float]] = []  # (rate, the cell's background opacity)
    for row, cohort in zip(heat["rows"], body["cohorts"], strict=True):
        assert row["size"] == (None if cohort["size"] is None else str(cohort["size"]))
        assert row["sizeText"] == ("—" if cohort["size"] is None else f"{cohort['size']:,}")
        assert row["sizeIncomplete"] == (cohort["size"] is not None and not cohort["complete"])
        assert [c["offset"] for c in row["cells"]] == [p["offset"] for p in cohort["periods"]]
        for cell, period in zip(row["cells"], cohort["periods"], strict=True):
            assert cell["value"] == (None if period["value"] is None else str(period["value"]))
            assert cell["blank"] == (period["value"] is None), (cohort["start"], period)
            assert cell["incomplete"] == (period["value"] is not None and not period["complete"])
            if period["value"] is None:
                assert cell["text"] == "" and cell["rate"] is None
                continue
            if period["rate"] is None:  # a cohort of no one: no share to show
                assert cohort["size"] == 0 and cell["text"] == "—" and cell["rate"] is None
                continue
            assert cell["rate"] is not None and float(cell["rate"]) == period["rate"]
            assert abs(shown_percent(cell["text"]) - period["rate"] * 100) <= 0.05 + 1e-9, cell
            rates.append((period["rate"], alpha(cell["background"])))

    cells = [p for c in body["cohorts"] for p in c["periods"]]
    # The data makes every kind of cell: computed and complete, incomplete, not computed (ahead).
    assert any(p["value"] is not None and p["complete"] for p in cells)
    if served.anchor.astimezone(ZoneInfo(tz)).hour != 0:  # else the newest day ended with the newest hour
        assert any(p["value"] is not None and not p["complete"] for p in cells)
    assert any(p["value"] is None for p in cells)
    assert len({rate for rate, _ in rates}) > 3  # cohorts come back less and less: not one shade
    # Shaded by the rate: a higher rate is never lighter, and clearly higher rates are darker.
    for rate, shade in rates:
        for other_rate, other_shade in rates:
            if rate > other_rate + 0.02:
                assert shade > other_shade, (rate, other_rate)
    if range_key == "30d":  # weeks before the data: a row of blank cells, its size "—"
        assert body["cohorts"][0]["size"] is None and all(c["blank"] for c in heat["rows"][0]["cells"])
    assert not page["problems"] and not console_errors(browser)


def expected_bucket(body: dict[str, Any]) -> dict[str, Any]:
    """The day the funnel shows: the latest complete one with a value, else the latest with one."""
    valued = [b for b in body["buckets"] if b["steps"][0]["value"] is not None]
    complete = [b for b in valued if b["complete"]]
    return (complete or valued)[-1]


@pytest.mark.parametrize(
    ("view", "tz", "filters"),
    [("7d", "UTC", {}), ("1d", "America/New_York", {"platform": "web"})],
)
def test_the_funnel_shows_the_apis_latest_complete_day(
    served: Served, browser: webdriver.Chrome, view: str, tz: str, filters: dict[str, str]
) -> None:
    extra = "".join(f"&{k}={v}" for k, v in filters.items())
    page = open_page(browser, f"{served.base}/?range={view}&tz={tz}{extra}")
    funnel = page["funnel"]
    newest = served.newest_day(tz)
    # The last 24 hours ask for the week's days too: one of them is complete.
    days = {"start": f"{newest - timedelta(days=6)}", "end": f"{newest + timedelta(days=1)}"}
    query = {"steps": STEPS, "grain": "day", "tz": tz, **days, **filters}
    assert funnel["query"] == query and funnel["message"] is None
    body = api_get(served.base, "v1/funnel", query)
    bucket = expected_bucket(body)
    assert bucket["complete"] and funnel["bucket"] == bucket
    assert "(the latest complete day; days in " + tz in funnel["caption"]
    day = datetime.fromisoformat(bucket["start"]).date()
    assert day.strftime("%b") in funnel["caption"] and f" {day.day}, {day.year}" in funnel["caption"]

    assert [s["metric"] for s in funnel["steps"]] == STEPS.split(",")
    first = bucket["steps"][0]["value"]
    assert first > 0 and bucket["steps"][-1]["value"] < first  # a funnel that narrows
    for shown, step in zip(funnel["steps"], bucket["steps"], strict=True):
        assert shown["value"] == str(step["value"]) and shown["valueText"] == f"{step['value']:,}"
        assert shown["fromFirst"].endswith("% of first")
        # Shown to one decimal: within half a unit of it (plus float error: 21.25% shows as 21.3%).
        shown_first = shown_percent(shown["fromFirst"][: -len(" of first")])
        assert abs(shown_first - step["rate_from_first"] * 100) <= 0.05 + 1e-9
        if step["rate_from_previous"] is None:
            assert shown["fromPrevious"] is None  # the first step has no previous one
        else:
            assert shown["fromPrevious"] is not None and shown["fromPrevious"].endswith("% of previous")
            rate = shown_percent(shown["fromPrevious"][: -len(" of previous")])
            assert abs(rate - step["rate_from_previous"] * 100) <= 0.05 + 1e-9
        assert abs(shown["fill"] - shown["track"] * step["value"] / first) <= 1.0, shown  # the bar's length
    assert not page["problems"] and not console_errors(browser)


def test_filters_the_theta_metrics_lack_say_so(served: Served, browser: webdriver.Chrome) -> None:
    # event_type is no dimension of the theta metrics: neither panel asks the API.
    page = open_page(browser, f"{served.base}/?range=7d&event_type=purchase")
    assert page["retention"]["message"] == page["funnel"]["message"] == "Not sliced by event_type."
    fetched = browser.execute_script(RESOURCE_URLS_JS)
    assert not any("/v1/retention" in url or "/v1/funnel" in url for url in fetched)
    # The default spec's theta metrics keep the total and platform only (their sketches are large).
    page = open_page(browser, f"{served.base}/?range=7d&country=US")
    assert page["retention"]["message"] == page["funnel"]["message"] == "Not sliced by country."
    assert not page["problems"] and not console_errors(browser)  # the rest of the view drew


# The catalogue as a spec without theta metrics would list it.
NO_THETA_JS = """
const realFetch = window.fetch;
window.fetch = async (input, init) => {
  const response = await realFetch(input, init);
  if (new URL(input, document.baseURI).pathname !== "/v1/metrics") return response;
  const body = await response.json();
  body.metrics = body.metrics.filter((m) => m.sketch !== "theta");
  return new Response(JSON.stringify(body), {status: 200, headers: {"Content-Type": "application/json"}});
};
"""


def test_without_theta_metrics_the_retention_and_funnel_panels_are_hidden(
    served: Served, browser: webdriver.Chrome
) -> None:
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NO_THETA_JS})
    try:
        page = open_page(browser, f"{served.base}/?range=7d")
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
    assert page["sketchesHidden"] and page["retention"] is None and page["funnel"] is None
    fetched = browser.execute_script(RESOURCE_URLS_JS)
    assert not any("/v1/retention" in url or "/v1/funnel" in url for url in fetched)
    assert QUANTILE in page["quantiles"] and not page["problems"] and not console_errors(browser)


def test_a_full_page_screenshot_shows_the_sketch_panels(
    served: Served, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    page = open_page(browser, f"{served.base}/?range=30d&tz=UTC")
    assert page["retention"]["rows"] and page["funnel"]["steps"] and page["quantiles"][QUANTILE]["plotted"]
    height = browser.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": VIEWPORT[0], "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    try:
        shot = tmp_path / "dashboard-sketches.png"
        browser.save_screenshot(str(shot))
    finally:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": VIEWPORT[1]})
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    if target := os.environ.get("TALLY_SKETCH_SCREENSHOT"):  # a copy to look at, on request
        shutil.copyfile(shot, target)
    assert not console_errors(browser)
