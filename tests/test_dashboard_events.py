"""The dashboard follows the publish events (GET /v1/events) in a real headless Chromium.

Hours of three metrics (hour builds, no Spark) are published into a Redis prefix of this module's own
and served by `tally serve`. With the page open, hours go through the real publisher
(cache.publish.publish_builds): the charts an event touches must come to show the API's new answer
without a reload, and the others must not be asked for again (every fetch the page makes is logged
by a wrapper installed before its scripts run). With the event stream blocked, the page polls /health
instead, and follows the events again once they can be reached.

Needs /usr/bin/chromium and /usr/bin/chromedriver: `scripts/install-chromium`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from selenium import webdriver
from selenium.webdriver.support.wait import WebDriverWait

from bench.server import start_server, stop
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, delete_prefix
from tests.support.browser import console_errors
from tests.support.builds import hour_build
from tests.support.net import free_port

SPEC = load_spec(DEFAULT_SPEC_PATH)
ONE_HOUR = timedelta(hours=1)
OPTIONS = PublishOptions(superseded_ttl=60)
TOKEN = "events-page-token"
VIEW = f"?range=1d&grain=hour&tz=UTC&token={TOKEN}"
WAIT = 20  # seconds the page may take to apply an event

# Installed before the page's scripts: every URL the page fetches, in order, in window.asked.
LOG_FETCHES_JS = """
window.asked = [];
const realFetch = window.fetch;
window.fetch = function (input, init) {
  window.asked.push(String(input instanceof Request ? input.url : input));
  return realFetch.apply(this, arguments);
};
"""

# One chart as drawn: its query, uPlot's data, the API's revised flags as kept, its status line.
CHART_JS = """
const c = window.tallyDashboard.charts[arguments[0]];
const panel = document.querySelector(`.panel[data-metric="${arguments[0]}"]`);
return JSON.stringify({query: c.query, plotted: c.plot ? c.plot.data : null,
                       revised: c.series.map(s => s.revised), status: panel.querySelector(".status").textContent});
"""

# Pixels of the revised ring's colour (chart.js REVISED_COLOR, #d92d20) in a box around point i of a chart.
RING_PIXELS_JS = """
const [name, i] = arguments;
const u = window.tallyDashboard.charts[name].plot;
const x = u.valToPos(u.data[0][i], "x", true), y = u.valToPos(u.data[1][i], "y", true);
const half = Math.round(10 * devicePixelRatio);
const pixels = u.ctx.getImageData(Math.round(x) - half, Math.round(y) - half, 2 * half, 2 * half).data;
let count = 0;
for (let k = 0; k < pixels.length; k += 4) {
  if (Math.abs(pixels[k] - 217) < 30 && Math.abs(pixels[k + 1] - 45) < 30 && Math.abs(pixels[k + 2] - 32) < 30) count++;
}
return count;
"""


@dataclass
class Served:
    base: str
    client: redis.Redis
    layout: KeyLayout
    hours: list[datetime]  # the hours published, oldest first
    gap: datetime  # an hour inside the page's range left unpublished

    @property
    def anchor(self) -> datetime:
        return max(self.hours) + ONE_HOUR

    def publish(self, hour: datetime, values: dict[str, float]) -> None:
        """One hour's build of `values` (metric -> its unsliced total) through the real publisher."""
        build = hour_build(hour, {name: {"_": value} for name, value in values.items()})
        publish_builds(self.client, self.layout, [build], OPTIONS, spec=SPEC)
        if hour not in self.hours:
            self.hours.append(hour)


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def served(redis_server: str) -> Iterator[Served]:
    """30 hours up to two hours ago of events, revenue and orders, one of them (5 hours before the newest)
    left out; served by `tally serve` with a token (so the page reads the stream as fetch, with the
    Authorization header EventSource could not send)."""
    newest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 2 * ONE_HOUR
    hours = [newest - ONE_HOUR * i for i in range(29, -1, -1)]
    gap = hours[-6]
    client = redis.Redis.from_url(redis_server)
    layout = KeyLayout(f"{TEST_PREFIX}-live-page-{uuid.uuid4().hex[:12]}")
    builds = [
        hour_build(h, {"events": {"_": 50.0 + i}, "revenue": {"_": 100.0 + 3 * i}, "orders": {"_": 10.0 + i % 5}})
        for i, h in enumerate(hours)
        if h != gap
    ]
    server = None
    try:
        publish_builds(client, layout, builds, OPTIONS, spec=SPEC)
        port = free_port()
        server = start_server(redis_server, layout.prefix, port, {"TALLY_API_TOKEN": TOKEN})
        yield Served(f"http://127.0.0.1:{port}", client, layout, [h for h in hours if h != gap], gap)
    finally:
        stop(server)
        delete_prefix(client, layout)
        client.close()


@pytest.fixture
def page(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The browser with every fetch logged (window.asked) from the next page load on."""
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": LOG_FETCHES_JS})
    browser.get_log("browser")  # only this test's console messages count
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
        browser.execute_script("localStorage.removeItem('tally.apiToken')")
        browser.get("about:blank")  # closes the page's event stream, which a server stopping would wait for


def live(browser: webdriver.Chrome) -> dict[str, Any]:
    return browser.execute_script("return window.tallyDashboard.live")


def open_page(browser: webdriver.Chrome, url: str, status: str = "live") -> None:
    browser.get(url)
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("const d = window.tallyDashboard; return !!(d && d.ready && d.live)")
    )
    WebDriverWait(browser, 10).until(lambda d: live(d)["status"] == status)


def wait_applied(browser: webdriver.Chrome, count: int) -> dict[str, Any]:
    """Wait until the page has applied `count` events and drawn what they touched."""
    script = "const d = window.tallyDashboard; return d.ready && d.live.applied >= arguments[0]"
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script(script, count))
    return live(browser)


def asked_since(browser: webdriver.Chrome, mark: int) -> list[str]:
    return browser.execute_script("return window.asked.slice(arguments[0])", mark)


def asked_count(browser: webdriver.Chrome) -> int:
    return browser.execute_script("return window.asked.length")


def chart(browser: webdriver.Chrome, name: str) -> dict[str, Any]:
    return json.loads(browser.execute_script(CHART_JS, name))


def api_answer(base: str, name: str, query: dict[str, str]) -> dict[str, Any]:
    response = httpx.get(f"{base}/v1/metrics/{name}", params=query, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    return response.json()


def plotted_from(body: dict[str, Any]) -> list[list[Any]]:
    points = body["series"][0]["points"]
    xs = [int(datetime.fromisoformat(p["ts"].replace("Z", "+00:00")).timestamp()) for p in points]
    return [xs, *[[p["value"] for p in s["points"]] for s in body["series"]]]


def shows_the_api(browser: webdriver.Chrome, base: str, name: str) -> dict[str, Any]:
    """The chart as drawn, which must equal the API's answer to its own query (asked now)."""
    drawn = chart(browser, name)
    assert drawn["plotted"] == plotted_from(api_answer(base, name, drawn["query"])), name
    return drawn


def metric_paths(urls: list[str]) -> set[str]:
    """The metrics whose series the URLs ask for (/v1/metrics/{name}?...)."""
    return {m.group(1) for url in urls if (m := re.search(r"/v1/metrics/([a-z_0-9]+)\?", url))}


def local_clocks(browser: webdriver.Chrome) -> list[str]:
    """The browser's local time now and a minute ago, as HH:MM (an event applied just now shows one)."""
    clock = "new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit', hourCycle: 'h23'})"
    return browser.execute_script(f"const c = {clock}; return [c.format(new Date()), c.format(Date.now() - 60000)]")


def test_a_publish_redraws_exactly_the_charts_it_touches(served: Served, page: webdriver.Chrome) -> None:
    assert httpx.get(f"{served.base}/v1/events").status_code == 401  # the page's stream sends the token
    open_page(page, f"{served.base}/{VIEW}&poll=1")
    assert "token" not in page.current_url
    before = chart(page, "orders")
    assert before["query"]["end"] == iso(served.anchor)
    gap_index = before["plotted"][0].index(int(served.gap.timestamp()))
    assert before["plotted"][1][gap_index] is None  # not published yet: a gap
    assert "updated" not in page.find_element("id", "live").text

    # Live, nothing is polled: with ?poll=1 a poll would ask for /health every second.
    mark = asked_count(page)
    page.execute_async_script("setTimeout(arguments[0], 2500)")
    assert not [url for url in asked_since(page, mark) if "/health" in url]

    # An hour of orders only, inside the range: orders and the ratio over it (avg_order_value) are asked
    # again, cards included; revenue and events are not.
    served.publish(served.gap, {"orders": 40.0})
    state = wait_applied(page, 1)
    asked = metric_paths(asked_since(page, mark))
    assert {"orders", "avg_order_value"} <= asked
    assert not asked & {"revenue", "events"}, asked
    assert "chart:orders" in state["refreshed"] and "card:orders" in state["refreshed"]
    assert not {"chart:revenue", "chart:events", "card:revenue"} & set(state["refreshed"])
    after = shows_the_api(page, served.base, "orders")
    assert after["plotted"][1][gap_index] == 40
    card = page.execute_script("return window.tallyDashboard.cards.orders")
    [point] = api_answer(served.base, "orders", card["queries"]["current"])["series"][0]["points"]
    assert card["value"] == point["value"]
    badge = page.find_element("id", "live")
    assert badge.get_attribute("data-status") == "live"
    assert re.fullmatch(r"Live · updated \d\d:\d\d", badge.text) and badge.text[-5:] in local_clocks(page), badge.text
    assert not any(after["revised"][0]) and page.execute_script(RING_PIXELS_JS, "orders", gap_index) == 0

    # The same hour again with other data: a revision, ringed on the chart as the API flags it.
    mark = asked_count(page)
    served.publish(served.gap, {"orders": 25.0})
    wait_applied(page, 2)
    revised = shows_the_api(page, served.base, "orders")
    flags = [p["revised"] for p in api_answer(served.base, "orders", revised["query"])["series"][0]["points"]]
    assert flags[gap_index] and sum(flags) == 1
    assert revised["revised"] == [flags] and "1 revised" in revised["status"]
    assert page.execute_script(RING_PIXELS_JS, "orders", gap_index) > 10
    assert page.execute_script(RING_PIXELS_JS, "orders", gap_index - 1) == 0
    assert not metric_paths(asked_since(page, mark)) & {"revenue", "events"}

    # A new newest hour moves every range (each ends there): the whole view is drawn again.
    newest = served.anchor
    served.publish(newest, {"events": 1.0, "revenue": 2.0, "orders": 3.0})
    state = wait_applied(page, 3)
    assert state["refreshed"] == ["view"]
    for name in ("orders", "revenue", "events"):
        drawn = shows_the_api(page, served.base, name)
        assert drawn["query"]["end"] == iso(newest + ONE_HOUR) and drawn["plotted"][1][-1] is not None
    assert page.find_element("id", "freshness").get_attribute("data-newest-hour") == iso(newest)
    assert not console_errors(page)


def test_without_the_event_stream_the_page_polls_then_follows_again(served: Served, page: webdriver.Chrome) -> None:
    page.execute_cdp_cmd("Network.enable", {})
    page.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/v1/events*"]})
    try:
        open_page(page, f"{served.base}/{VIEW}&poll=1", status="polling")
        assert "updated" not in page.find_element("id", "live").text
        hour = served.hours[-3]
        served.publish(hour, {"orders": 77.0})  # a revision: the newest hour stays
        WebDriverWait(page, WAIT).until(
            lambda d: d.execute_script("const d = window.tallyDashboard; return d.ready && d.live.batches >= 1")
        )
        drawn = shows_the_api(page, served.base, "orders")
        assert drawn["plotted"][1][drawn["plotted"][0].index(int(hour.timestamp()))] == 77
        badge = page.find_element("id", "live")
        assert badge.get_attribute("data-status") == "polling" and "updated" in badge.text
        assert live(page)["applied"] == 0  # found by polling /health, not by an event
    finally:
        page.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    # Reachable again, the stream is opened after its pause, and polling stops. Opened without an event
    # id to resume from, it cannot replay what was published meanwhile: the whole view is drawn again.
    batches = live(page)["batches"]
    WebDriverWait(page, 30).until(lambda d: live(d)["status"] == "live")
    script = "const d = window.tallyDashboard; return d.ready && d.live.batches > arguments[0]"
    WebDriverWait(page, WAIT).until(lambda d: d.execute_script(script, batches))
    assert live(page)["refreshed"] == ["view"]
    shows_the_api(page, served.base, "orders")
    mark = asked_count(page)
    page.execute_async_script("setTimeout(arguments[0], 2500)")
    assert not [url for url in asked_since(page, mark) if "/health" in url]
    assert not [e for e in console_errors(page) if "v1/events" not in e["message"]]


# The pure parts in the browser (the page is open): frames as the SSE specification reads them.
PARSE_JS = """
const done = arguments[arguments.length - 1];
Promise.all([import("./static/events.js"), import("./static/touches.js")]).then(([events, touches]) => {
  const out = {};
  const stream = "retry: 3000\\n: connected\\n\\n" +
    "id: 1-0\\nevent: published\\ndata: {\\"a\\":1}\\n\\nid: 2-0\\r\\nevent: rev";
  out.first = events.parseSse(stream);
  out.second = events.parseSse(out.first.rest + "ised\\r\\ndata: x\\r\\ndata:y\\r\\n\\r\\n: keep-alive\\r");
  out.third = events.parseSse(out.second.rest + "\\n\\n");
  out.pauses = [1, 2, 3, 10].map((n) => events.pauseBefore(n, 3000, () => 0.5));
  const query = {start: "2026-11-27T00:00:00Z", end: "2026-11-28T00:00:00Z", tz: "UTC"};
  const at = (hour, metrics) => ({hours: [hour], metrics});
  const orders = {name: "orders", kind: "count"};
  const ratio = {name: "aov", kind: "ratio"};
  const parted = {name: "aov", kind: "ratio", parts: [{name: "revenue"}, {name: "orders", window_days: 7}]};
  const reads = (m, q = query) => touches.seriesReads(m, [q]);
  out.touch = [
    touches.touches(at("2026-11-27T05:00:00Z", ["orders"]), reads(orders)),
    touches.touches(at("2026-11-27T05:00:00Z", ["revenue"]), reads(orders)),
    touches.touches(at("2026-11-27T05:00:00Z", []), reads(orders)),
    touches.touches(at("2026-11-28T00:00:00Z", ["orders"]), reads(orders)),
    touches.touches(at("2026-11-26T23:00:00Z", ["orders"]), reads(orders)),
    touches.touches(at("2026-11-26T23:00:00Z", ["orders"]), reads(orders, {...query, window: "1d"})),
    touches.touches(at("2026-11-20T05:00:00Z", ["events"]), reads(ratio)),
    touches.touches(at("2026-11-21T05:00:00Z", ["orders"]), reads(parted)),
    touches.touches(at("2026-11-21T05:00:00Z", ["events"]), reads(parted)),
    touches.touches(at("2026-11-27T05:00:00Z", ["viewers"]),
                    touches.sketchReads(["viewers"], {start: "2026-11-27", end: "2026-11-28", tz: "Europe/Berlin"})),
    touches.touches(at("2026-11-26T22:00:00Z", ["viewers"]),
                    touches.sketchReads(["viewers"], {start: "2026-11-27", end: "2026-11-28", tz: "Europe/Berlin"})),
    touches.touches(at("2026-12-25T05:00:00Z", ["new_users"]),
                    touches.sketchReads(["new_users"], query, {later: true})),
  ];
  done(JSON.stringify(out));
}, (e) => done(JSON.stringify({error: String(e)})));
"""


def test_the_stream_parser_and_what_an_event_touches(served: Served, page: webdriver.Chrome) -> None:
    page.get(f"{served.base}/{VIEW}")
    out = json.loads(page.execute_async_script(PARSE_JS))
    assert "error" not in out, out
    first = out["first"]
    fields = ("id", "event", "data", "retry", "comment")
    assert [tuple(f.get(k) for k in fields) for f in first["frames"]] == [
        (None, "message", None, 3000, True),
        ("1-0", "published", '{"a":1}', None, False),
    ]
    assert first["rest"] == "id: 2-0\nevent: rev"  # a frame cut by the chunk's end waits for the rest
    second = out["second"]
    assert [tuple(f.get(k) for k in fields[:3]) for f in second["frames"]] == [("2-0", "revised", "x\ny")]
    assert second["rest"] == ": keep-alive\r"  # a \r at the end may be half of a \r\n
    assert [f["comment"] for f in out["third"]["frames"]] == [True] and out["third"]["rest"] == ""
    assert out["pauses"] == [3000, 6000, 12000, 60000]
    # in range and metric; another metric; pending marks (all metrics); at the end; before the start;
    # before the start but within the window; a ratio without parts (any metric, any hour before its end);
    # with parts, a part's window reaches back; not another metric; a day in Berlin starts at 23:00 UTC;
    # the hour before it; retention reads the periods after its cohorts.
    assert out["touch"] == [True, False, True, False, False, True, True, True, False, True, False, True]
