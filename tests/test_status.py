"""`tally status`: freshness and the newest runs' statistics, read from a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from cache.builds import HourBuild, build_id
from cache.freshness import INPUT_CHANGED, mark_pending
from cache.options import PublishOptions
from cache.publish import publish_builds
from tally.app.cli import main
from tally.core.settings import get_settings


def build(hour: datetime, rows: int) -> HourBuild:
    values = {"events": {"_": float(rows)}}
    stats = {
        "rows_read": rows,
        "valid_rows": rows - 3,
        "invalid_rows": 3,
        "invalid_by_reason": {"missing_event_id": 2, "bad_amount": 1},
        "duplicate_rows": 1,
        "counted_events": rows - 4,
        "duration_seconds": 12.5,  # as manifests published before application_seconds have it
    }
    return HourBuild(hour, build_id(values, {}), values, {}, stats)


@pytest.fixture
def env(monkeypatch, redis_server, layout):
    monkeypatch.setenv("REDIS_URL", redis_server)
    monkeypatch.setenv("TALLY_REDIS_PREFIX", layout.prefix)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def publish(redis_client, layout, newest_ended_ago: timedelta, count: int = 4) -> list[datetime]:
    # The newest hour ended between newest_ended_ago and that plus an hour ago.
    newest = (datetime.now(UTC) - newest_ended_ago - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    hours = [newest - timedelta(hours=i) for i in range(count - 1, -1, -1)]
    publish_builds(
        redis_client, layout, [build(h, 1000 + i) for i, h in enumerate(hours)], PublishOptions(superseded_ttl=60)
    )
    return hours


def test_fresh_status_lists_the_newest_runs_newest_first(env, redis_client, layout, capsys):
    hours = publish(redis_client, layout, timedelta(minutes=5))
    mark_pending(redis_client, layout, hours[:1], {hours[0]: INPUT_CHANGED})
    assert main(["status", "--runs", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "ok" and report["prefix"] == layout.prefix
    assert report["newest_hour"] == hours[-1].strftime("%Y-%m-%dT%H:00:00Z")
    lag = (datetime.now(UTC) - hours[-1] - timedelta(hours=1)).total_seconds()
    assert report["lag_seconds"] == pytest.approx(lag, abs=2)
    assert report["pending_hours"] == [hours[0].strftime("%Y-%m-%dT%H:00:00Z")]
    assert [r["hour"] for r in report["runs"]] == [h.strftime("%Y-%m-%dT%H:00:00Z") for h in reversed(hours[1:])]
    newest = report["runs"][0]
    assert (newest["rows_read"], newest["valid_rows"], newest["invalid_rows"]) == (1003, 1000, 3)
    assert (newest["duplicate_rows"], newest["counted_events"], newest["application_seconds"]) == (1, 999, 12.5)
    assert newest["invalid_by_reason"] == {"missing_event_id": 2, "bad_amount": 1}
    assert newest["published_at"] and newest["build"]

    assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert "lag" in table and ": ok" in table and hours[0].strftime("%Y-%m-%dT%H:00:00Z") in table  # pending
    header, *rows = table.split("\n\n", 1)[1].strip().splitlines()
    assert header.split()[:4] == ["hour", "rows", "read", "valid"] and len(rows) == 4
    assert rows[0].split()[:7] == [hours[-1].strftime("%Y-%m-%dT%H:00:00Z"), "1,003", "1,000", "3", "1", "999", "12.5s"]


def test_stale_or_cold_exits_1(env, redis_client, layout, capsys):
    assert main(["status"]) == 1
    assert "COLD" in capsys.readouterr().out
    publish(redis_client, layout, timedelta(hours=3))
    assert main(["status", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "stale"
    assert main(["status", "--max-lag", str(5 * 3600)]) == 0
    assert main(["status", "--max-lag", "60"]) == 1
    assert "STALE" in capsys.readouterr().out


def test_the_limit_is_the_settings_one_health_uses(env, redis_client, layout, monkeypatch, capsys):
    publish(redis_client, layout, timedelta(hours=3))
    monkeypatch.setenv("TALLY_MAX_LAG_SECONDS", str(5 * 3600))
    get_settings.cache_clear()
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_lag_seconds"] == 5 * 3600


def test_unreachable_redis_names_the_url(layout):
    url = "redis://:hunter2@127.0.0.1:1/0"
    environment = {**os.environ, "REDIS_URL": url, "TALLY_REDIS_PREFIX": layout.prefix}
    result = subprocess.run(
        [sys.executable, "-m", "tally.app.cli", "status", "--json"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Redis at redis://:***@127.0.0.1:1/0 is unreachable" in result.stderr
    assert json.loads(result.stdout)["status"] == "unavailable"
    assert "hunter2" not in result.stdout + result.stderr


def test_status_starts_without_fastapi(env):
    # `tally status` reads Redis through cache.reads; the API's web stack has no business loading.
    code = "import sys; from tally.app.cli import main; main(['status', '--json']); print('fastapi' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stdout + result.stderr
