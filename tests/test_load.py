"""64 concurrent connections for 60 s against a real `tally serve`: zero errors (bench.load does the work)."""

from __future__ import annotations

import pytest

from bench.load import CONNECTIONS, END, SECONDS, dashboard_queries, run_load
from bench.server import start_server
from bench.window_latency import publish_days
from tests.support.net import free_port


@pytest.mark.slow  # a minute of load by design
def test_64_connections_for_60_seconds_without_an_error(redis_client, layout, redis_server):
    publish_days(redis_client, layout, 8, END)
    server = start_server(redis_server, layout.prefix, free_port())
    try:
        port = server.args[-1]
        # A week of data: the month-long queries read a partly empty range, as a new install's do.
        result = run_load(f"http://127.0.0.1:{port}", dashboard_queries(END), connections=CONNECTIONS, seconds=SECONDS)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"\n{result}")
    assert result.errors == 0, result.statuses
    assert result.requests >= 1000 and result.seconds >= SECONDS
