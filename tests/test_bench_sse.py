"""P11's SSE fan-out bench (bench/sse_fanout.py), tiny: 20 subscribers, 3 publishes, no P4 load.

The real `tally serve` and the real subscriber process, so the bench code cannot rot
unnoticed: every subscriber must get every event, in order, with a latency measured
from the publish.
"""

from __future__ import annotations

import json

import redis

from bench.sse_fanout import Published, Stream, fanout_figures, measure, p4_summary, parse_frame
from cache.keys import KeyLayout
from tests.support.net import free_port


def chunk(text: str) -> bytes:
    body = text.encode()
    return f"{len(body):x}\r\n".encode() + body + b"\r\n"


def test_a_stream_finds_frames_across_chunk_and_read_boundaries() -> None:
    event = 'id: 5-0\nevent: published\ndata: {"hours":["2026-11-01T00:00:00Z"]}\n\n'
    frames = ["retry: 3000\n: connected to x\n\n", ": keep-alive\n\n", event[:20], event[20:]]
    wire = b"".join(chunk(part) for part in frames)
    stream = Stream()
    for at, start in enumerate(range(0, len(wire), 7)):  # reads that cut chunks and frames anywhere
        stream.feed(wire[start : start + 7], float(at))
    assert stream.connected and len(stream.frames) == 1  # the comment frames are not events
    arrival, frame = stream.frames[0]
    assert arrival == (len(wire) - 1) // 7  # when its last byte came
    assert parse_frame(frame) == ("5-0", "published", ["2026-11-01T00:00:00Z"])


def test_lost_or_reordered_events_are_counted() -> None:
    published = [Published(f"2026-11-01T0{i}:00:00Z", 0.01, 10.0 + i) for i in range(3)]
    every = [[10.0 + i + 0.002, f"{i + 1}-0", "published", [p.hour]] for i, p in enumerate(published)]
    events = [every, every[:2], [every[1], every[0], every[2]]]
    figures = fanout_figures(published, json.loads(json.dumps(events)))
    assert figures["subscribers_with_every_event_in_order"] == 1
    assert (figures["events_expected"], figures["events_received"]) == (9, 8)
    assert figures["latency_ms"]["p50"] == 2.0


def test_twenty_subscribers_get_three_publishes(
    redis_client: redis.Redis, layout: KeyLayout, redis_server: str
) -> None:
    results = measure(
        redis_client,
        redis_server,
        layout,
        subscribers=20,
        publishes=3,
        interval=0.1,
        with_p4=False,
        data_days=1,
        pin=False,
        port=free_port(),
    )
    fanout = results["fanout"]
    assert fanout["subscribers_with_every_event_in_order"] == 20
    assert fanout["events_received"] == fanout["events_expected"] == 60 and fanout["other_frames"] == 0
    # Measured from the publish's return: positive, and well under the keep-alive interval.
    assert 0 < fanout["latency_ms"]["p50"] <= fanout["fanout_complete_ms"]["p99"] < 5_000
    (check,) = results["subscriber_checks"]
    assert check == {"still_open": 20, "all_still_open": True, "frames_after_collect": 0, "errors": {}}


def test_p4_turns_sum_up_as_medians_and_ratios() -> None:
    def turn(rps: float, cpu_ms: float) -> dict[str, dict[str, float]]:
        run = {"rps": rps, "p99_ms": 5.0, "server_cpu_ms_per_request": cpu_ms, "errors": 0}
        return {"16": run, "64": {**run, "rps": rps * 2}}

    turns = {"with": [turn(900, 0.2), turn(950, 0.25), turn(100, 0.2)], "without": [turn(1000, 0.2)] * 3}
    summary = p4_summary(turns)
    assert summary["16"]["with"]["rps"] == 900 and summary["64"]["without"]["rps"] == 2000
    assert summary["ratio"] == 0.9 and summary["cpu_ratio"] == 1.0 and summary["errors"] == 0
