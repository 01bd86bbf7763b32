"""P11: SSE fan-out. Publish to event at 500 subscribers, and P4 with them connected.

Publishes 31 days of realistic hourly builds (bench.window_latency: the metrics P4's
paths read) under a private prefix and starts `tally serve` on it, response cache on
and pinned to one core, as P4 runs it. A subscriber process (this module, run as
``python -m bench.sse_fanout --port ...``, pinned to the other core) opens 500
``GET /v1/events`` streams on raw asyncio sockets and parses their frames. Then:

1. **Fan-out.** The bench process publishes ``PUBLISHES`` new hours one at a time,
   ``INTERVAL`` s apart, with the real publisher (:func:`cache.publish.publish_builds`),
   and notes the clock as soon as it returns, which is right after its MULTI/EXEC (the
   day hashes are rebuilt once at the end, see :func:`publish_one_at_a_time`). Each
   subscriber notes when each event's frame arrived. Both use CLOCK_MONOTONIC, which is
   the same clock for every process on the machine. Reported: publish-to-event latency
   over every (subscriber, event) pair (p50, p99), the last subscriber's arrival per
   event (when the fan-out is complete: p50, p99), and whether every subscriber got
   every event once and in order, and the server's CPU time per event fanned out.
2. **P4 with the subscribers connected.** P4's load (bench.loadgen, P4's paths, 16
   and 64 connections, 8 s each) runs with the 500 streams open and without them,
   taking turns (P4_TURNS: each side early and late), so drift on the shared machine
   reaches both sides alike. The figure's ratio is the lower of the two connection
   counts' median req/s with subscribers / without. Target >= 0.9 (issue 17: P4
   within 10%). The server's CPU time per request is reported beside it: on a loaded
   machine req/s follow the neighbours, CPU per request much less.

``python -m bench.suite P11`` reports it and writes results/sse_fanout.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis

from bench.server import ROOT, start_server, stop, write_results
from bench.sketch_latency import _cpu_seconds
from bench.window_latency import hour_build, percentile, publish_days
from cache.days import rebuild_days
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from tally.core.layout import format_hour
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec

if TYPE_CHECKING:
    from bench.suite import Bench, Figure

SUBSCRIBERS, PUBLISHES, INTERVAL = 500, 50, 0.3
DATA_DAYS, DATA_END = 31, datetime(2026, 11, 1, tzinfo=UTC)  # covers P4's paths (October 2026)
CONNECTS_AT_ONCE = 50  # subscribers connecting at the same time (the rest wait their turn)
READY_SECONDS, COLLECT_SECONDS = 60.0, 30.0
TARGET_RATIO = 0.9
OPTIONS = PublishOptions(superseded_ttl=60)
# P4's load with the subscribers connected and without, in this order: each side has early and
# late turns, so drift on the (shared) machine reaches both alike. The first "with" turn keeps
# the fan-out's subscribers.
P4_TURNS = ("with", "without", "without", "with", "with", "without", "without", "with")


# --- the subscriber process -------------------------------------------------------------------


@dataclass
class Stream:
    """One SSE response on a raw socket: de-chunks the body and keeps each event frame with its arrival time."""

    raw: bytearray = field(default_factory=bytearray)
    body: bytearray = field(default_factory=bytearray)
    connected: bool = False
    open: bool = False
    error: str | None = None
    # (arrival, frame) of every frame with an id (events and resets); comments are dropped.
    frames: list[tuple[float, bytes]] = field(default_factory=list)

    def feed(self, data: bytes, now: float) -> None:
        self.raw += data
        while (end := self.raw.find(b"\r\n")) >= 0:
            size = int(self.raw[:end], 16)
            if len(self.raw) < end + 2 + size + 2:
                break  # the rest of this chunk is still on its way
            self.body += self.raw[end + 2 : end + 2 + size]
            del self.raw[: end + 2 + size + 2]
        while (end := self.body.find(b"\n\n")) >= 0:
            frame = bytes(self.body[:end])
            del self.body[: end + 2]
            if frame.startswith(b"retry:"):
                self.connected = True  # the stream's first frame: the hub has this subscriber
            elif frame.startswith(b"id:"):
                self.frames.append((now, frame))


def parse_frame(frame: bytes) -> tuple[str, str, list[str]]:
    """(id, event type, hours) of an event frame."""
    fields = dict(line.split(": ", 1) for line in frame.decode().split("\n") if ": " in line)
    return fields["id"], fields["event"], json.loads(fields["data"]).get("hours", [])


async def subscribe(port: int, stream: Stream, gate: asyncio.Semaphore) -> None:
    """Hold one ``GET /v1/events`` open, feeding ``stream`` until the server closes it or the task is cancelled."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            if head[9:12] != b"200" or b"chunked" not in head.lower():
                stream.error = head.split(b"\r\n", 1)[0].decode()
                return
            stream.open = True
        while data := await reader.read(65536):
            stream.feed(data, time.monotonic())  # one clock read per read(), before any parsing
        stream.error = "closed by the server"
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        stream.error = f"{type(exc).__name__}: {exc}"
    finally:
        stream.open = False
        if writer is not None:
            writer.close()


async def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def emit(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


@dataclass
class Crowd:
    """``count`` streams held open together, and how many frames each had when last collected."""

    streams: list[Stream]
    tasks: list[asyncio.Task[None]]
    collected: list[int]

    @classmethod
    async def connect(cls, port: int, count: int) -> Crowd:
        streams = [Stream() for _ in range(count)]
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        tasks = [asyncio.create_task(subscribe(port, s, gate)) for s in streams]
        crowd = cls(streams, tasks, [0] * count)
        ready = await wait_for(lambda: all(s.connected or s.error for s in streams), READY_SECONDS)
        emit({"ready": ready, "connected": sum(s.connected for s in streams), "errors": errors_of(streams)})
        return crowd

    async def collect(self, events: int) -> None:
        await wait_for(lambda: holding(self.streams, events), COLLECT_SECONDS)
        self.collected = [len(s.frames) for s in self.streams]
        emit({"events": [[[at, *parse_frame(frame)] for at, frame in s.frames] for s in self.streams]})

    async def disconnect(self) -> None:
        """Reply how many streams were still open and the frames they got since the last collect; close them."""
        later = [
            [parse_frame(f)[1] for _, f in s.frames[n:]] for s, n in zip(self.streams, self.collected, strict=True)
        ]
        emit({"open": sum(s.open for s in self.streams), "later_events": later, "errors": errors_of(self.streams)})
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def run_subscribers(port: int, count: int) -> None:
    """Obey commands on stdin until it closes, one JSON reply each on stdout.

    ``connect``: open ``count`` streams and reply once each has its first frame (or
    failed). ``collect N``: wait (up to COLLECT_SECONDS) for every stream to hold N
    events, reply each stream's events as [arrival, id, type, hours]. ``disconnect``:
    reply how many streams were still open and what they got since the last collect,
    then close them. The process stays (idle) between a disconnect and the next connect,
    so turns with and without subscribers differ by the open streams only.
    """
    loop = asyncio.get_running_loop()
    crowd: Crowd | None = None
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = line.split()
        if command[0] == "connect":
            crowd = await Crowd.connect(port, count)
        elif command[0] == "collect" and crowd is not None:
            await crowd.collect(int(command[1]))
        elif command[0] == "disconnect" and crowd is not None:
            await crowd.disconnect()
            crowd = None
    if crowd is not None:
        for task in crowd.tasks:
            task.cancel()
        await asyncio.gather(*crowd.tasks, return_exceptions=True)


def holding(streams: Sequence[Stream], events: int) -> bool:
    """Whether every stream holds ``events`` frames (or has closed: it will get no more)."""
    return all(len(s.frames) >= events or not s.open for s in streams)


def errors_of(streams: Sequence[Stream]) -> dict[str, int]:
    found: dict[str, int] = {}
    for stream in streams:
        if stream.error:
            found[stream.error] = found.get(stream.error, 0) + 1
    return found


# --- the bench process ------------------------------------------------------------------------


class Subscribers:
    """The subscriber process (on its own core), driven over its stdin and stdout."""

    def __init__(self, port: int, count: int, cpu: int | None) -> None:
        self.count = count
        command = [sys.executable, "-m", "bench.sse_fanout", "--port", str(port), "--clients", str(count)]
        self.process = subprocess.Popen(
            [*command, *(["--cpu", str(cpu)] if cpu is not None else [])],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the subscriber process ended (exit code {self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def connect(self) -> None:
        hello = self.send("connect")
        if not hello["ready"] or hello["connected"] != self.count:
            raise RuntimeError(f"{hello['connected']} of {self.count} subscribers connected: {hello['errors']}")

    def collect(self, events: int) -> list[list[list[Any]]]:
        found: list[list[list[Any]]] = self.send(f"collect {events}")["events"]
        return found

    def disconnect(self) -> dict[str, Any]:
        """What the streams saw since the last collect (nothing is published then): all still open, no frames."""
        reply = self.send("disconnect")
        return {
            "still_open": reply["open"],
            "all_still_open": reply["open"] == self.count,
            "frames_after_collect": sum(len(later) for later in reply["later_events"]),
            "errors": reply["errors"],
        }


@contextmanager
def subscriber_process(port: int, count: int, cpu: int | None) -> Iterator[Subscribers]:
    subscribers = Subscribers(port, count, cpu)
    try:
        yield subscribers
    finally:
        if subscribers.process.stdin is not None:
            subscribers.process.stdin.close()  # end of commands: it closes its streams and exits
        try:
            subscribers.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            subscribers.process.kill()
            subscribers.process.wait()


@dataclass(frozen=True)
class Published:
    hour: str  # as events name it
    seconds: float  # publish_builds' duration
    done_at: float  # time.monotonic() right after it returned


def publish_one_at_a_time(
    client: redis.Redis, layout: KeyLayout, first: datetime, count: int, interval: float
) -> list[Published]:
    """Publish ``count`` new hours from ``first``, one per switch, ``interval`` s apart (start to start).

    ``publish_builds`` without ``spec`` returns right after its MULTI/EXEC (which holds the
    event); with it, it would first rebuild the day hashes, and the clock would be read late.
    The day hashes are rebuilt once at the end instead, as the publish with ``spec`` would
    have left them: nothing reads those days meanwhile.
    """
    spec = load_spec(DEFAULT_SPEC_PATH)
    rng = random.Random(11)
    builds = [hour_build(first + timedelta(hours=i), rng, spec.sketch_lg_k) for i in range(count)]
    published = []
    for build in builds:
        started = time.monotonic()
        publish_builds(client, layout, [build], OPTIONS)
        done = time.monotonic()
        published.append(Published(format_hour(build.hour), round(done - started, 4), done))
        time.sleep(max(0.0, started + interval - time.monotonic()))
    rebuild_days(client, layout, spec, {b.hour.date() for b in builds})
    return published


def fanout_figures(published: Sequence[Published], events: Sequence[Sequence[list[Any]]]) -> dict[str, Any]:
    """Latency per (subscriber, event) and per event's last subscriber; whether anyone lost or reordered one."""
    hours = [p.hour for p in published]
    done_at = {p.hour: p.done_at for p in published}
    pairs: list[float] = []
    last: dict[str, float] = {}
    complete = 0
    for received in events:
        got = [(at, entry_id, kind, frame_hours) for at, entry_id, kind, frame_hours in received]
        ids = [entry_id for _, entry_id, _, _ in got]
        in_order = ids == sorted(ids, key=lambda i: tuple(int(x) for x in i.split("-")))
        delivered = [h for _, _, kind, frame_hours in got if kind == "published" for h in frame_hours]
        complete += delivered == hours and in_order and len(got) == len(hours)
        for at, _, _, frame_hours in got:
            for hour in frame_hours:
                if hour in done_at:
                    latency = (at - done_at[hour]) * 1000
                    pairs.append(latency)
                    last[hour] = max(last.get(hour, latency), latency)
    completion = [last[h] for h in hours if h in last]
    return {
        "subscribers": len(events),
        "publishes": len(hours),
        "subscribers_with_every_event_in_order": complete,
        "events_expected": len(hours) * len(events),
        "events_received": len(pairs),
        "other_frames": sum(1 for received in events for _, _, kind, _ in received if kind != "published"),
        "latency_ms": summary(pairs),
        "fanout_complete_ms": summary(completion),
        "publish_ms": summary([p.seconds * 1000 for p in published]),
    }


def summary(samples: Sequence[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(statistics.median(samples), 2),
        "p99": round(percentile(list(samples), 99), 2),
        "max": round(max(samples), 2),
    }


@contextmanager
def pinned_server(redis_url: str, prefix: str, port: int, cpu: int | None) -> Iterator[subprocess.Popen]:
    """`tally serve` on ``prefix`` (response cache on, as in P4), pinned to ``cpu``."""
    server = start_server(redis_url, prefix, port)
    if cpu is not None:
        os.sched_setaffinity(server.pid, {cpu})
    try:
        yield server
    finally:
        stop(server)


def measure(
    client: redis.Redis,
    redis_url: str,
    layout: KeyLayout,
    *,
    subscribers: int = SUBSCRIBERS,
    publishes: int = PUBLISHES,
    interval: float = INTERVAL,
    with_p4: bool = True,
    data_days: int = DATA_DAYS,
    pin: bool = True,
    port: int | None = None,
) -> dict[str, Any]:
    """Publish the data set, serve it, fan ``publishes`` events out to ``subscribers`` streams; P4 with and without."""
    from bench.suite import LOAD_CPU, SERVER_CPU

    print(f"  publishing {data_days} days of hourly builds ...", flush=True)
    publish_days(client, layout, data_days, DATA_END)
    port = port or 18300 + os.getpid() % 190
    server_cpu, load_cpu = (SERVER_CPU, LOAD_CPU) if pin else (None, None)
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {"subscribers": subscribers, "publishes": publishes, "interval_s": interval}
    with (
        pinned_server(redis_url, layout.prefix, port, server_cpu) as server,
        subscriber_process(port, subscribers, load_cpu) as crowd,
    ):
        print(f"  {subscribers} subscribers, {publishes} publishes {interval} s apart ...", flush=True)
        crowd.connect()
        cpu = _cpu_seconds(server.pid)
        published = publish_one_at_a_time(client, layout, DATA_END, publishes, interval)
        results["fanout"] = fanout_figures(published, crowd.collect(publishes))
        # What fanning one event out costs the server (its own CPU time, whatever else the machine runs).
        results["fanout"]["server_cpu_ms_per_event"] = round((_cpu_seconds(server.pid) - cpu) / publishes * 1000, 2)
        if with_p4:
            print(f"  P4's load with and without them, {len(P4_TURNS)} turns ...", flush=True)
            results["p4"], results["subscriber_checks"] = p4_turns(port, server.pid, crowd)
        else:
            results["subscriber_checks"] = [crowd.disconnect()]
    results["load_average"] = {"before": load_before, "after": os.getloadavg()[0], "cores": os.cpu_count()}
    return results


def p4_turns(port: int, server_pid: int, crowd: Subscribers) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """P4 in turns with the subscribers connected (they are, on entry) and without: per turn and summed up;
    and what the subscribers saw during each "with" stretch (:meth:`Subscribers.disconnect`)."""
    from bench.suite import API_PATHS

    turns: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
    checks = []
    connected = True
    for side in P4_TURNS:
        if side == "with" and not connected:
            crowd.connect()
            crowd.collect(0)
        elif side == "without" and connected:
            checks.append(crowd.disconnect())
        connected = side == "with"
        turns[side].append(p4_turn(port, server_pid, API_PATHS))
    if connected:
        checks.append(crowd.disconnect())
    return {**turns, "summary": p4_summary(turns)}, checks


def p4_turn(port: int, server_pid: int, paths: dict[str, str]) -> dict[str, Any]:
    """P4's load on P4's paths, 16 then 64 connections (bench.suite._load: 8 s each, generator on LOAD_CPU).

    Each run also gets the server's CPU time per request answered (its /proc CPU time over
    the run, warm-up included, divided by its own request counter's increase): on a shared
    machine req/s follow whatever else runs on the server's core, CPU per request much less.
    """
    from bench.suite import _get, _load

    for path in paths.values():  # a publish changed the generation: the first reads fill the response cache
        status, _ = _get(port, path)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}")
    runs = {}
    for connections in (16, 64):
        cpu, answered = _cpu_seconds(server_pid), series_requests(port)
        run = _load(port, list(paths.values()), connections)
        cpu, answered = _cpu_seconds(server_pid) - cpu, series_requests(port) - answered
        runs[str(connections)] = {**run, "server_cpu_ms_per_request": round(cpu / answered * 1000, 4)}
    return runs


def series_requests(port: int) -> float:
    """How many series requests (``/v1/metrics/{name}``) the server has answered: its Prometheus counter."""
    from bench.suite import _get

    _, body = _get(port, "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith("tally_api_requests_total{") and 'route="/v1/metrics/{name}"' in line
    )


def p4_summary(p4: dict[str, Any]) -> dict[str, Any]:
    """Median req/s, p99 and server CPU per request per side and connection count; the ratios with / without.

    ``ratio``: req/s with / without (the figure's). ``cpu_ratio``: CPU per request without / with,
    the same direction (below 1: the subscribers cost), less moved by the machine's other work.
    """
    out: dict[str, Any] = {}
    for connections in ("16", "64"):
        side: dict[str, Any] = {
            name: {
                key: statistics.median(turn[connections][key] for turn in p4[name])
                for key in ("rps", "p99_ms", "server_cpu_ms_per_request")
            }
            | {"errors": sum(turn[connections]["errors"] for turn in p4[name])}
            for name in ("with", "without")
        }
        side["ratio"] = round(side["with"]["rps"] / side["without"]["rps"], 3)
        side["cpu_ratio"] = round(
            side["without"]["server_cpu_ms_per_request"] / side["with"]["server_cpu_ms_per_request"], 3
        )
        out[connections] = side
    out["ratio"] = min(out[c]["ratio"] for c in ("16", "64"))
    out["cpu_ratio"] = min(out[c]["cpu_ratio"] for c in ("16", "64"))
    out["errors"] = sum(out[c][name]["errors"] for c in ("16", "64") for name in ("with", "without"))
    return out


def p11_sse_fanout(b: Bench) -> Figure:
    """P11: publish-to-event latency at 500 subscribers; P4 with them connected / without (>= 0.9)."""
    from bench.suite import Figure, at_least

    layout = KeyLayout(f"{b.layout.prefix}-p11")
    try:
        results = measure(b.client, b.redis_url, layout)
    finally:
        keys = list(b.client.scan_iter(match=layout.all_keys_pattern(), count=5000))
        for i in range(0, len(keys), 5000):
            b.client.delete(*keys[i : i + 5000])
    write_results("sse_fanout", results)
    fanout, p4 = results["fanout"], results["p4"]["summary"]
    lossless = (
        fanout["subscribers_with_every_event_in_order"] == fanout["subscribers"]
        and fanout["events_received"] == fanout["events_expected"]
        and all(c["all_still_open"] and c["frames_after_collect"] == 0 for c in results["subscriber_checks"])
    )
    ratio = p4["ratio"]
    met, headroom = at_least(ratio, TARGET_RATIO)
    pairs, last = fanout["latency_ms"], fanout["fanout_complete_ms"]
    sides = {name: (p4["16"][name], p4["64"][name]) for name in ("with", "without")}
    return Figure(
        "P11",
        f"SSE fan-out: publish to event at {fanout['subscribers']} subscribers ({fanout['publishes']} publishes); "
        "P4's dashboard reads with them connected vs without, server and load generator on one core each",
        f"event p50 {pairs['p50']:.1f} / p99 {pairs['p99']:.1f} ms (all {fanout['subscribers']} by "
        f"p50 {last['p50']:.1f} / p99 {last['p99']:.1f} ms; server CPU {fanout['server_cpu_ms_per_event']:.1f} ms "
        f"per event), {'no event lost' if lossless else 'EVENTS LOST'}; "
        f"P4 with them {p4_text(sides['with'])}",
        f"P4 without {p4_text(sides['without'])}",
        ratio,
        f">= {TARGET_RATIO} (P4 with / without); no event lost",
        met and lossless and p4["errors"] == 0,
        headroom,
        results,
    )


def p4_text(side: tuple[dict[str, Any], dict[str, Any]]) -> str:
    """16 and 64 connections' req/s, p99 at 16 and the server's CPU per request at 16."""
    at_16, at_64 = side
    return (
        f"{at_16['rps']:.0f} / {at_64['rps']:.0f} req/s (16/64 conn), p99 {at_16['p99_ms']:.1f} ms at 16, "
        f"server CPU {at_16['server_cpu_ms_per_request'] * 1000:.0f} us/request"
    )


def main(argv: list[str] | None = None) -> int:
    """The subscriber process (see :func:`run_subscribers`)."""
    parser = argparse.ArgumentParser(prog="bench.sse_fanout", description="SSE subscribers for P11")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=SUBSCRIBERS)
    parser.add_argument("--cpu", type=int, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio works too, just slower
        pass
    asyncio.run(run_subscribers(args.port, args.clients))
    return 0


if __name__ == "__main__":
    sys.exit(main())
