"""A closed-loop HTTP/1.1 load generator, run as its own process on its own core.

    python -m bench.loadgen --port 8000 --connections 16 --seconds 10 --cpu 1 /path1 /path2

Each connection keeps one request in flight over a kept-alive socket and cycles
through the paths. It speaks just enough HTTP/1.1 for a uvicorn server
(Content-Length bodies), on raw asyncio streams with uvloop: an order of magnitude
cheaper per request than an HTTP client library, so the server, not the
generator, is what saturates. Prints one JSON object: requests, errors, rps,
p50/p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter

WARMUP_SECONDS = 1.0


async def _connection(
    port: int,
    paths: list[str],
    offset: int,
    deadline: float,
    warm_until: float,
    latencies: list[float],
    statuses: Counter,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    requests = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n".encode() for p in paths]
    position = offset
    try:
        while (now := time.perf_counter()) < deadline:
            writer.write(requests[position % len(requests)])
            position += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if now >= warm_until:
                latencies.append((time.perf_counter() - now) * 1000)
                statuses[status] += 1
    finally:
        writer.close()


async def _run(port: int, paths: list[str], connections: int, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    warm_until = started + WARMUP_SECONDS
    deadline = warm_until + seconds
    await asyncio.gather(
        *(_connection(port, paths, i, deadline, warm_until, latencies, statuses) for i in range(connections))
    )
    measured = time.perf_counter() - warm_until
    latencies.sort()
    total = sum(statuses.values())

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))], 3)

    return {
        "connections": connections,
        "seconds": round(measured, 2),
        "requests": total,
        "errors": total - statuses["200"],
        "statuses": dict(statuses),
        "rps": round(total / measured, 1),
        "p50_ms": pct(50) if latencies else None,
        "p99_ms": pct(99) if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cpu", type=int, help="pin this process to one core")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio still works, just slower
        pass
    print(json.dumps(asyncio.run(_run(args.port, args.paths, args.connections, args.seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
