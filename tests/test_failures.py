"""Failures give a clear error and leave what was published intact (real CLI, real Redis).

Each case first publishes a known state under its own prefix, then runs
`tally run` the way an operator or the DAG would, and compares a full dump of
the prefix before and after.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cache.publish import HourBuild, build_id, publish_builds
from tests.conftest import dump_prefix, event, write_events

H09 = datetime(2026, 11, 27, 9, tzinfo=UTC)
TALLY = str(Path(sys.executable).with_name("tally"))


@pytest.fixture
def published(redis_client, layout):
    values = {"events": {"_": 42.0}}
    publish_builds(redis_client, layout, [HourBuild(H09, build_id(values, {}), values, {}, {})], superseded_ttl=60)
    return dump_prefix(redis_client, layout)


def tally(tmp_path: Path, layout, redis_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "TALLY_DATA_DIR": str(tmp_path),
        "TALLY_REDIS_PREFIX": layout.prefix,
        "REDIS_URL": redis_url,
        "SPARK_MASTER": "local[1]",
        **env,
    }
    return subprocess.run([TALLY, *args], env=full_env, capture_output=True, text=True, timeout=300)


def test_invalid_spec(tmp_path, redis_client, layout, redis_server, published):
    spec = tmp_path / "metrics.yaml"
    spec.write_text("metrics:\n  - {name: revenue, description: d, unit: u, kind: total}\n")
    write_events(tmp_path, datetime(2026, 11, 27, 10, tzinfo=UTC), [event("a", "2026-11-27T10:00:00")])
    result = tally(tmp_path, layout, redis_server, "run", "--hour", "2026-11-27T10:00Z", TALLY_SPEC_PATH=str(spec))
    assert result.returncode != 0
    assert f"{spec}: metric 'revenue': field 'kind'" in result.stderr
    assert "Traceback" not in result.stderr
    assert dump_prefix(redis_client, layout) == published


def test_missing_partition(tmp_path, redis_client, layout, redis_server, published):
    result = tally(tmp_path, layout, redis_server, "run", "--hour", "2026-11-27T10:00Z")
    assert result.returncode != 0
    assert "dt=2026-11-27/hour=10 does not exist (hour not arrived)" in result.stderr
    assert dump_prefix(redis_client, layout) == published


def test_missing_required_column(tmp_path, redis_client, layout, redis_server, published):
    path = write_events(tmp_path, datetime(2026, 11, 27, 10, tzinfo=UTC), [event("a", "2026-11-27T10:00:00")])
    pq.write_table(pq.read_table(path).drop_columns(["event_type"]), path)
    result = tally(tmp_path, layout, redis_server, "run", "--hour", "2026-11-27T10:00Z")
    assert result.returncode != 0
    assert f"{path}: missing required column 'event_type'" in result.stderr
    assert dump_prefix(redis_client, layout) == published


def test_redis_outage(tmp_path, redis_client, layout, published):
    write_events(tmp_path, datetime(2026, 11, 27, 10, tzinfo=UTC), [event("a", "2026-11-27T10:00:00")])
    result = tally(tmp_path, layout, "redis://127.0.0.1:1/0", "run", "--hour", "2026-11-27T10:00Z")
    assert result.returncode != 0
    assert "Redis at redis://127.0.0.1:1/0 is unreachable" in result.stderr
    assert dump_prefix(redis_client, layout) == published


def test_not_a_whole_hour(tmp_path, layout, redis_server):
    result = tally(tmp_path, layout, redis_server, "run", "--hour", "2026-11-27T10:30Z")
    assert result.returncode == 2 and "is not on a whole hour" in result.stderr
