"""SIGKILL at each step of a run (real `tally` processes, real Redis): readers keep a consistent state,
and the next run leaves exactly what a run that never crashed leaves.

Story, for every kill point in tally.core.faults.POINTS: hour 10:00 is published (3
events); a late file adds 2; a `tally` process recomputing or publishing it is
killed at the point; the API is read; then the next hourly run (11:00) runs
normally. Its result is compared with the same story without the kill: the
Redis state (publish and compute times aside), the rollups and the answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from dashboard_api import create_app
from jobs.hourly import run_hours
from tally.app.pipeline import compute, find_stale, lookback, publish_settings_hours
from tally.core.faults import ENV, POINTS
from tally.core.layout import rollup_hour_dir
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, delete_prefix, dump_prefix, event, write_events
from tests.support.cli import TALLY

SPEC = load_spec(DEFAULT_SPEC_PATH)
H10 = datetime(2026, 11, 27, 10, tzinfo=UTC)
H11 = datetime(2026, 11, 27, 11, tzinfo=UTC)
QUERIES = [
    ("events", {"grain": "hour", "start": "2026-11-27T09:00Z", "end": "2026-11-27T12:00Z"}),
    ("events", {"grain": "day", "start": "2026-11-27", "end": "2026-11-28"}),
    ("active_users", {"grain": "day", "start": "2026-11-27", "end": "2026-11-28", "group_by": "country"}),
]
# Where a kill leaves the switch: before it readers see the old build; after it, the new one.
SWITCHED = {"publish:before-days"}


def rows(hour: int, count: int, prefix: str) -> list[dict]:
    return [event(f"{prefix}{i}", f"2026-11-27T{hour}:{i:02d}:00", user_id=f"{prefix}u{i}") for i in range(count)]


def start_story(spark, client, layout: KeyLayout, data_dir: Path) -> Settings:
    """10:00 published with 3 events, then a late file with 2 more (not yet processed).

    Every story writes the same files with the same modification times: the same input,
    to its fingerprint (which names sketch metrics' builds, see cache.builds.build_id).
    """
    pinned(write_events(data_dir, H10, rows(10, 3, "a")))
    run_hours(spark, data_dir, SPEC, [H10])
    publish_hours(client, layout, data_dir, SPEC, [H10], PublishOptions(superseded_ttl=60))
    pinned(write_events(data_dir, H10, rows(10, 2, "late"), name="late.parquet"))
    pinned(write_events(data_dir, H11, rows(11, 4, "b")))
    return Settings(redis_prefix=layout.prefix, data_dir=data_dir, spark_master="local[2]")


def pinned(path: Path) -> None:
    """Give a written file a modification time of its own name's, the same in every story."""
    moment = int(datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp() * 1e9) + len(path.name)
    os.utime(path, ns=(moment, moment))


def next_hourly_run(settings: Settings) -> None:
    """What tally_hourly does for 11:00: find stale hours, compute, publish."""
    stale = find_stale(settings, lookback(H11, settings.late_data_horizon_hours))
    computed = compute(settings, [H11], stale, app_name="test")
    publish_settings_hours(settings, [datetime.fromisoformat(h) for h in computed.publish])


def normalized(dump: dict, prefix: str) -> dict:
    """A prefix's dump without its prefix and without publish or compute times."""
    # input_fingerprint hashes file modification times; the stories pin them (see start_story) but
    # the statistics are compared without it anyway, as they were before builds used it.
    timeless = (
        "published_at",
        "computed_at",
        "application_seconds",
        "application_hours",
        "detected_at",
        "input_fingerprint",
    )
    out = {}
    for key, value in dump.items():
        name = key.decode().removeprefix(prefix + ":")
        if name == "pointer":
            value = {k: {f: v for f, v in json.loads(v).items() if f not in timeless} for k, v in value.items()}
        elif name == "days":
            value = {k: v.split(b"|")[::2] for k, v in value.items()}
        elif name.endswith(":manifest"):
            document = json.loads(value)
            document["stats"] = {k: v for k, v in document["stats"].items() if k not in timeless}
            value = {k: v for k, v in document.items() if k not in timeless}
        elif name == "storage":
            value = b"<measured>"  # the storage report: bytes as Redis's allocator counts them, and when
        elif name == "generation":
            value = b"<random token>"  # new on every visible write, by design (cache.keys.mark_changed)
        elif name in ("meta", "rollups"):
            value = {k: v for k, v in value.items() if k not in (b"published_at", b"computed_at")}
            value = sorted(value) if name == "rollups" else value
        out[name] = value
    return out


def answers(settings: Settings) -> list[dict]:
    with TestClient(create_app(settings)) as api:
        out = []
        for metric, params in QUERIES:
            body = api.get(f"/v1/metrics/{metric}", params=params).json()
            out.append({k: v for k, v in body.items() if k not in ("as_of", "build")})
        return out


def rollup_rows(data_dir: Path, hour: datetime) -> list[dict]:
    return sorted(pq.read_table(rollup_hour_dir(data_dir, hour)).to_pylist(), key=repr)


@pytest.fixture(scope="module")
def clean(spark, tmp_path_factory: pytest.TempPathFactory, redis_server: str):
    """The story with no kill: what every faulted story must end as."""
    import redis

    client = redis.Redis.from_url(redis_server)
    layout = KeyLayout(f"{TEST_PREFIX}-{uuid.uuid4().hex[:12]}")
    data_dir = tmp_path_factory.mktemp("clean")
    settings = start_story(spark, client, layout, data_dir)
    next_hourly_run(settings)
    result = (normalized(dump_prefix(client, layout), layout.prefix), answers(settings), rollup_rows(data_dir, H10))
    delete_prefix(client, layout)
    client.close()
    return result


def killed(settings: Settings, point: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "TALLY_DATA_DIR": str(settings.data_dir),
        "TALLY_REDIS_PREFIX": settings.redis_prefix,
        "SPARK_MASTER": "local[1]",
        ENV: point,
    }
    process = subprocess.Popen(
        [TALLY, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the Spark JVM the driver started must not outlive it
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_leaves_a_consistent_state_and_the_next_run_heals_it(
    spark, point: str, clean, redis_client, layout, tmp_path: Path
):
    settings = start_story(spark, redis_client, layout, tmp_path)
    before = answers(settings)
    if point.startswith("job:"):
        result = killed(settings, point, "run", "--hour", "2026-11-27T10:00Z")
    else:  # the rollup is computed; the publish of it dies
        run_hours(spark, tmp_path, SPEC, [H10])
        result = killed(settings, point, "publish", "--start", "2026-11-27T10:00Z", "--end", "2026-11-27T11:00Z")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]

    during = answers(settings)
    hourly = [p["value"] for p in during[0]["series"][0]["points"]]
    daily = during[1]["series"][0]["points"][0]["value"]
    if point in SWITCHED:
        assert hourly == [None, 5, None] and daily == 5  # the new build, whole (stale day hash unused)
    else:
        assert during == before and hourly == [None, 3, None] and daily == 3  # the previous build

    next_hourly_run(settings)
    state, final_answers, rollup = clean
    assert final_answers == answers(settings)
    assert rollup == rollup_rows(tmp_path, H10)
    assert normalized(dump_prefix(redis_client, layout), layout.prefix) == state


def test_the_same_hour_three_times_gives_identical_rollups_and_redis_state(spark, redis_client, layout, tmp_path):
    write_events(tmp_path, H10, rows(10, 6, "a") + rows(10, 2, "a"))  # duplicates included
    settings = Settings(redis_prefix=layout.prefix, data_dir=tmp_path, spark_master="local[2]")
    states = []
    for _ in range(3):
        compute(settings, [H10], find_stale(settings, lookback(H10, 72)), app_name="test")
        publish_settings_hours(settings, [H10])
        rollup = pq.read_table(rollup_hour_dir(tmp_path, H10))
        states.append((rollup_rows(tmp_path, H10), rollup.schema, dump_prefix(redis_client, layout)))
    assert states[0][2], "nothing was published"
    # Byte-identical Redis state: the second and third publishes are no-ops (same content hash).
    assert states[0] == states[1] == states[2]
