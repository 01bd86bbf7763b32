"""`tally backfill` as an operator runs it: the line it prints says what reached Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cache.rehydrate import is_cold
from tally.app.cli import main
from tally.core.settings import get_settings
from tests.conftest import event, write_events

FIRST = datetime(2026, 11, 27, 22, tzinfo=UTC)
HOURS = [FIRST + timedelta(hours=i) for i in range(3)]


def test_backfill_into_an_empty_prefix_says_it_published_the_hours(
    spark, tmp_path: Path, redis_client, layout, redis_server, monkeypatch, capsys
):
    for i, hour in enumerate(HOURS):
        write_events(tmp_path, hour, [event(f"a{i}", hour.isoformat()), event(f"b{i}", hour.isoformat(), user_id="u2")])
    monkeypatch.setenv("REDIS_URL", redis_server)
    monkeypatch.setenv("TALLY_REDIS_PREFIX", layout.prefix)
    get_settings.cache_clear()
    args = ["backfill", "--start", "2026-11-27T22:00Z", "--end", "2026-11-28T01:00Z", "--data-dir", str(tmp_path)]
    try:
        assert is_cold(redis_client, layout)
        assert main(args) == 0
        into_empty = capsys.readouterr().out
        assert main(args) == 0
        again = capsys.readouterr().out
    finally:
        get_settings.cache_clear()
    # Into an empty prefix the rehydrate publishes the hours before the publish proper sees them.
    assert "published 3 hour(s) (rehydrated from the rollups: the prefix was empty)" in into_empty
    assert "unchanged" not in into_empty
    assert "published 0 hour(s), 3 unchanged" in again
    assert not is_cold(redis_client, layout)
