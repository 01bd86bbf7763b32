"""Broken and hostile raw files (tests/support/hostile.py): each is quarantined with a reason or fails only its hour.

All cases run in one batch, the way `tally backfill` or tally_reconcile would see
them: one good, published hour, plus one hour per case holding a good file and
the hostile one. The good hour's published state must not change, the quarantine
cases must count exactly their valid rows, and each failing case must fail only
its own hour with a message naming the file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cache.options import PublishOptions
from cache.publish import publish_hours
from jobs.hourly import RunReport, run_hours
from tally.core.layout import format_hour
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import dump_prefix, event, write_events
from tests.support.hostile import CASES, Case

SPEC = load_spec(DEFAULT_SPEC_PATH)
GOOD_HOUR = datetime(2026, 11, 20, 0, tzinfo=UTC)
GOOD_ROWS = 5


def case_hour(index: int) -> datetime:
    return GOOD_HOUR + timedelta(hours=index + 1)


def good_rows(hour: datetime) -> list[dict]:
    return [event(f"good-{i}", (hour + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S")) for i in range(GOOD_ROWS)]


@pytest.fixture(scope="module")
def batch(spark, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunReport, dict[str, list[Path]]]:
    data_dir = tmp_path_factory.mktemp("hostile")
    write_events(data_dir, GOOD_HOUR, good_rows(GOOD_HOUR))
    written = {}
    for index, case in enumerate(CASES):
        hour = case_hour(index)
        write_events(data_dir, hour, good_rows(hour))
        written[case.name] = case.write(data_dir, hour)
    hours = [GOOD_HOUR, *(case_hour(i) for i in range(len(CASES)))]
    return data_dir, run_hours(spark, data_dir, SPEC, hours), written


def test_the_corpus_has_every_kind_the_contract_names():
    assert len(CASES) >= 12
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_case_is_quarantined_or_fails_only_its_hour(batch, case: Case):
    _, report, written = batch
    hour = format_hour(case_hour(CASES.index(case)))
    if case.outcome == "fail":
        assert hour in report.failed, (hour, report.computed.get(hour))
        message = report.failed[hour]
        assert str(written[case.name][0]) in message and case.message in message, message
        assert "Traceback" not in message and len(message) < 2000, message
    else:
        assert hour in report.computed, report.failed.get(hour) or report.missing.get(hour)
        stats = report.computed[hour]
        assert {reason: n for reason, n in stats["invalid_by_reason"].items() if n} == case.reasons
        assert stats["valid_rows"] == GOOD_ROWS + case.valid_rows
        assert stats["counted_events"] == GOOD_ROWS + case.valid_rows


def test_other_hours_are_unaffected(batch):
    _, report, _ = batch
    good = report.computed[format_hour(GOOD_HOUR)]
    assert good["rows_read"] == GOOD_ROWS and good["invalid_rows"] == 0
    assert report.missing == {}
    assert set(report.failed) == {format_hour(case_hour(i)) for i, c in enumerate(CASES) if c.outcome == "fail"}


def test_nothing_published_changes_and_quarantined_hours_publish(batch, redis_client, layout):
    data_dir, report, _ = batch
    publish_hours(redis_client, layout, data_dir, SPEC, [GOOD_HOUR], PublishOptions(superseded_ttl=60))
    before = dump_prefix(redis_client, layout)
    # The whole batch's computed hours publish; the good hour's keys stay byte-identical.
    publish_hours(redis_client, layout, data_dir, SPEC, report.computed_hours, PublishOptions(superseded_ttl=60))
    after = dump_prefix(redis_client, layout)
    unchanged = [key for key in before if b"2026-11-20T00Z" in key]
    assert unchanged and all(after[key] == before[key] for key in unchanged)
