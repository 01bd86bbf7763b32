"""Failures give a clear error and leave what was published intact (real CLI, real Redis).

Each case first publishes a known state under its own prefix, then runs
`tally run` the way an operator or the DAG would (its ``main``, in this process: what
the console script prints is tested in tests/test_spec_corpus.py), and compares a full
dump of the prefix before and after.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from cache.builds import HourBuild, build_id
from cache.options import PublishOptions
from cache.publish import publish_builds
from tests.conftest import dump_prefix, event, write_events
from tests.support.cli import CliResult, tally_env, tally_in_process

H09 = datetime(2026, 11, 27, 9, tzinfo=UTC)


@pytest.fixture
def tally_run(tmp_path, layout, monkeypatch, capsys):
    """`tally run ARGS` against ``tmp_path`` and the test's prefix, with the Redis URL given."""

    def run(redis_url: str, *args: str, **env: str) -> CliResult:
        return tally_in_process(["run", *args], monkeypatch, capsys, **tally_env(tmp_path, layout, redis_url, **env))

    return run


@pytest.fixture
def published(redis_client, layout):
    values = {"events": {"_": 42.0}}
    publish_builds(
        redis_client, layout, [HourBuild(H09, build_id(values, {}), values, {}, {})], PublishOptions(superseded_ttl=60)
    )
    return dump_prefix(redis_client, layout)


def test_invalid_spec(tally_run, tmp_path, redis_client, layout, redis_server, published):
    spec = tmp_path / "metrics.yaml"
    spec.write_text("metrics:\n  - {name: revenue, description: d, unit: u, kind: total}\n")
    write_events(tmp_path, datetime(2026, 11, 27, 10, tzinfo=UTC), [event("a", "2026-11-27T10:00:00")])
    result = tally_run(redis_server, "--hour", "2026-11-27T10:00Z", TALLY_SPEC_PATH=str(spec))
    assert result.code != 0
    assert f"{spec}: metric 'revenue': field 'kind'" in result.err
    assert "Traceback" not in result.err
    assert dump_prefix(redis_client, layout) == published


def test_missing_partition(tally_run, tmp_path, redis_client, layout, redis_server, published):
    result = tally_run(redis_server, "--hour", "2026-11-27T10:00Z")
    assert result.code != 0
    assert "dt=2026-11-27/hour=10 does not exist (hour not arrived)" in result.err
    assert dump_prefix(redis_client, layout) == published


def test_missing_required_column(tally_run, tmp_path, redis_client, layout, redis_server, published):
    path = write_events(tmp_path, datetime(2026, 11, 27, 10, tzinfo=UTC), [event("a", "2026-11-27T10:00:00")])
    pq.write_table(pq.read_table(path).drop_columns(["event_type"]), path)
    result = tally_run(redis_server, "--hour", "2026-11-27T10:00Z")
    assert result.code != 0
    assert f"{path}: missing required column 'event_type'" in result.err
    assert dump_prefix(redis_client, layout) == published


def test_redis_outage(tally_run, tmp_path, redis_client, layout, published):
    write_events(tmp_path, datetime(2026, 11, 27, 10, tzinfo=UTC), [event("a", "2026-11-27T10:00:00")])
    result = tally_run("redis://127.0.0.1:1/0", "--hour", "2026-11-27T10:00Z")
    assert result.code != 0
    assert "Redis at redis://127.0.0.1:1/0 is unreachable" in result.err
    assert dump_prefix(redis_client, layout) == published


def test_not_a_whole_hour(tally_run, tmp_path, layout, redis_server):
    result = tally_run(redis_server, "--hour", "2026-11-27T10:30Z")
    assert result.code == 2 and "is not on a whole hour" in result.err
