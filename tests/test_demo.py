"""What `make demo` generates and prints: two weeks to the last full hour, and examples that hit that data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from tally.app.demo import demo_banner, demo_examples, demo_range
from tally.core.layout import parse_instant

BASE = "http://127.0.0.1:8123"


def test_the_range_is_two_weeks_ending_at_the_last_full_hour():
    start, end = demo_range(datetime(2026, 12, 2, 3, 55, 12, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 11, 18, 3, tzinfo=UTC), datetime(2026, 12, 2, 3, tzinfo=UTC))


@pytest.mark.parametrize("minutes_past_midnight", [0, 5, 3 * 60 + 55, 23 * 60 + 59])
def test_every_example_reads_only_generated_hours(minutes_past_midnight: int):
    start, end = demo_range(datetime(2026, 12, 2, tzinfo=UTC) + timedelta(minutes=minutes_past_midnight))
    examples = demo_examples(BASE, start, end)
    assert len(examples) == 3
    for _, url in examples:
        query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
        first, last = parse_instant(query["start"]), parse_instant(query["end"])
        # A window reaches back (N - 1) days before the first bucket.
        reach = timedelta(days=int(query.get("window", "1d")[:-1]) - 1)
        assert start <= first - reach and first < last <= end, url
        if query["grain"] == "day":  # whole days only: a partial last day would look like a drop
            assert first.hour == last.hour == 0


def test_the_banner_lists_the_dashboard_first_then_docs_metrics_health_and_curl_lines():
    start, end = demo_range(datetime(2026, 12, 2, 3, 55, tzinfo=UTC))
    banner = demo_banner(BASE, start, end)
    urls = re.findall(r"http://\S+?(?=['\s])", banner)
    assert urls[:4] == [f"{BASE}/", f"{BASE}/docs", f"{BASE}/v1/metrics", f"{BASE}/health"]
    curls = re.findall(r"curl '([^']+)'", banner)
    assert curls == [url for _, url in demo_examples(BASE, start, end)]
    assert "2026-11-18 03:00 to 2026-12-02 03:00 UTC" in banner
