"""The storage report and the Redis budget: bytes per tier and metric, growth per day, a publish over budget."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cache.acl import create_users, user_names
from cache.keys import TIER_DAY, TIER_HOUR, TIER_INDEX, TIER_OTHER, KeyInfo, KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from cache.rollback import rollback_hour
from cache.storage import (
    MEMORY_SAMPLES,
    days_until_budget,
    measure,
    prefix_keys,
    read_report,
    refresh_report,
    write_report,
)
from cache.verify import VerificationError
from dashboard_api import create_app
from dashboard_api.metrics import install_metrics
from tally.core.layout import ROLLUPS_HOURLY, hour_field
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import dump_prefix
from tests.support.builds import hour_build
from tests.support.cli import tally_in_process

SPEC = load_spec(DEFAULT_SPEC_PATH)
DAY_ONE = datetime(2026, 11, 20, tzinfo=UTC)
DAY_TWO = DAY_ONE + timedelta(days=1)
OPTIONS = PublishOptions(superseded_ttl=60)


def day_builds(midnight: datetime, countries: int, scale: float = 1.0) -> list:
    """24 hours of ``events`` (unsliced and per country) and ``revenue`` (unsliced)."""
    builds = []
    for h in range(24):
        events = {"_": 100.0 * scale + h, **{f"country=C{c:03d}": float(c + h) * scale for c in range(countries)}}
        builds.append(hour_build(midnight + timedelta(hours=h), {"events": events, "revenue": {"_": 5.0 * h}}))
    return builds


def sizes_of(client: redis.Redis, layout: KeyLayout) -> dict[str, int]:
    return {
        key.decode(): int(client.memory_usage(key, samples=MEMORY_SAMPLES))
        for key in client.scan_iter(match=layout.all_keys_pattern())
    }


def test_keys_are_classified_by_the_layout():
    layout = KeyLayout("tally")
    hour = hour_field(DAY_ONE)
    assert layout.storage() == "tally:storage"
    assert layout.classify(layout.values("abc", hour, "revenue")) == KeyInfo(
        TIER_HOUR, "values", metric="revenue", build="abc", hour=hour
    )
    assert layout.classify(layout.sketches("abc", hour, "active_users")) == KeyInfo(
        TIER_HOUR, "sketches", metric="active_users", build="abc", hour=hour
    )
    assert layout.classify(layout.manifest("abc", hour)) == KeyInfo(TIER_HOUR, "manifest", build="abc", hour=hour)
    day_key = layout.day_values("2026-11-20", "events")
    assert layout.classify(day_key) == KeyInfo(TIER_DAY, "values", metric="events", day="2026-11-20")
    assert layout.classify(layout.temporary(day_key, "ab12")) == KeyInfo(
        TIER_DAY, "values", metric="events", day="2026-11-20"
    )
    assert layout.classify(layout.day_sketches("2026-11-20", "active_users")).tier == TIER_DAY
    for key in (layout.pointer(), layout.day_index(), layout.pending(), layout.meta(), layout.definitions()):
        assert layout.classify(key).tier == TIER_INDEX
    assert layout.classify(layout.generation()).tier == TIER_INDEX
    assert layout.classify(layout.storage()).tier == TIER_INDEX
    assert layout.classify(layout.history(hour)) == KeyInfo(TIER_INDEX, "history", hour=hour)
    assert layout.classify("tally:something-new").tier == TIER_OTHER
    assert layout.classify("tallyx:pointer") is None
    assert layout.classify("other:b:abc:2026-11-20T00Z:events:values") is None


def test_the_report_adds_up_memory_usage_per_tier_and_metric(redis_client, layout, tmp_path: Path):
    publish_builds(redis_client, layout, day_builds(DAY_ONE, countries=20), OPTIONS, spec=SPEC)
    rollup = tmp_path / ROLLUPS_HOURLY / "dt=2026-11-20" / "hour=00" / "part-0.parquet"
    rollup.parent.mkdir(parents=True)
    rollup.write_bytes(b"x" * 1234)
    (tmp_path / ROLLUPS_HOURLY.parent / "stats").mkdir()
    (tmp_path / ROLLUPS_HOURLY.parent / "stats" / "s.json").write_bytes(b"y" * 66)

    report = measure(redis_client, layout, data_dir=tmp_path)

    sizes = sizes_of(redis_client, layout)
    assert report.redis_bytes == sum(sizes.values())
    assert report.keys == len(sizes)
    p = layout.prefix
    events_hours = sum(n for k, n in sizes.items() if k.startswith(f"{p}:b:") and k.endswith(":events:values"))
    events_day = sum(n for k, n in sizes.items() if k == f"{p}:day:2026-11-20:events:values")
    manifests = sum(n for k, n in sizes.items() if k.endswith(":manifest"))
    index = sum(n for k, n in sizes.items() if not k.startswith((f"{p}:b:", f"{p}:day:")))
    assert events_hours > 0 and events_day > 0
    assert report.by_metric["events"] == {TIER_HOUR: events_hours, TIER_DAY: events_day}
    assert report.tier_bytes[TIER_HOUR][""] == manifests
    assert report.by_tier[TIER_INDEX] == index
    assert sum(report.by_tier.values()) == report.redis_bytes
    assert report.rollup_bytes == 1234 + 66
    # 20 countries and the total in every hour of events; revenue is unsliced.
    assert report.slices_per_hour["events"] == {"newest": 21.0, "mean": 21.0}
    assert report.slices_per_hour["revenue"] == {"newest": 1.0, "mean": 1.0}
    assert report.budget_bytes is None and report.days_until_budget is None


def test_growth_per_day_is_the_newest_complete_day_and_gives_the_days_until_the_budget(redis_client, layout):
    publish_builds(redis_client, layout, day_builds(DAY_ONE, countries=5), OPTIONS, spec=SPEC)
    publish_builds(redis_client, layout, day_builds(DAY_TWO, countries=30), OPTIONS, spec=SPEC)
    # A part of a third day: not complete, so not what growth is measured on.
    publish_builds(redis_client, layout, day_builds(DAY_TWO + timedelta(days=1), countries=1)[:3], OPTIONS, spec=SPEC)
    sizes = sizes_of(redis_client, layout)
    day_two_hours = sum(n for k, n in sizes.items() if ":b:" in k and ":2026-11-21T" in k)
    day_two_aggregates = sum(n for k, n in sizes.items() if ":day:2026-11-21:" in k)
    total = sum(sizes.values())
    budget = total + 10 * (day_two_hours + day_two_aggregates)

    kept_hours = measure(redis_client, layout, budget=budget, hour_retention_days=0)
    assert kept_hours.growth is not None
    assert kept_hours.growth.day == "2026-11-21" and kept_hours.growth.complete
    assert kept_hours.growth.hour_tier_bytes == day_two_hours
    assert kept_hours.growth.day_tier_bytes == day_two_aggregates
    assert kept_hours.growth.per_day_bytes == day_two_hours + day_two_aggregates
    assert kept_hours.days_until_budget == pytest.approx(10.0)
    assert kept_hours.warning is not None and "10.0 day(s)" in kept_hours.warning

    # Hours leave Redis after 14 days: what stays for good is the day aggregates.
    tiered = measure(redis_client, layout, budget=budget, hour_retention_days=14)
    assert tiered.growth is not None and tiered.growth.per_day_bytes == day_two_aggregates
    assert "day aggregates only" in tiered.growth.basis
    assert tiered.days_until_budget == pytest.approx((budget - total) / day_two_aggregates)
    assert days_until_budget(total - 1, total, tiered.growth) == 0.0


def test_a_publish_over_the_budget_is_refused_naming_the_metric_and_the_served_state_stays(
    redis_client, layout, redis_server
):
    publish_builds(redis_client, layout, day_builds(DAY_ONE, countries=3), OPTIONS, spec=SPEC)
    settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix)
    query = {"grain": "hour", "start": "2026-11-20T00:00Z", "end": "2026-11-20T06:00Z", "group_by": "country"}
    with TestClient(create_app(settings)) as api:
        served = api.get("/v1/metrics/events", params=query).json()
    before = dump_prefix(redis_client, layout)
    used = measure(redis_client, layout).redis_bytes
    # New builds of six hours, with many more countries: events grows, revenue does not.
    bigger = day_builds(DAY_ONE, countries=400, scale=2.0)[:6]
    budget = used + 2000
    with pytest.raises(VerificationError) as refused:
        publish_builds(redis_client, layout, bigger, PublishOptions(superseded_ttl=60, redis_budget_bytes=budget))

    message = str(refused.value)
    assert "'events'" in message and "TALLY_REDIS_BUDGET_MB" in message and str(budget) in message
    assert "2026-11-20T00:00:00Z .. 2026-11-20T05:00:00Z (6 hours)" in message
    # Nothing staged is left, nothing live moved: Redis holds exactly what it held, and serves it.
    assert dump_prefix(redis_client, layout) == before
    with TestClient(create_app(settings)) as api:
        assert api.get("/v1/metrics/events", params=query).json() == served

    # Within a budget that fits, the same publish goes live.
    roomy = PublishOptions(superseded_ttl=60, redis_budget_bytes=used * 100)
    assert len(publish_builds(redis_client, layout, bigger, roomy, spec=SPEC).published) == 6
    with TestClient(create_app(settings)) as api:
        assert api.get("/v1/metrics/events", params=query).json() != served


def test_a_refused_publish_of_a_kept_build_puts_its_keys_back_as_they_were(redis_client, layout):
    hour = DAY_ONE
    first, second = (hour_build(hour, {"events": {"_": float(n), "country=US": 1.0}}) for n in (1, 2))
    publish_builds(redis_client, layout, [first], OPTIONS, spec=SPEC)
    publish_builds(redis_client, layout, [second], OPTIONS, spec=SPEC)
    assert rollback_hour(redis_client, layout, hour, spec=SPEC) == first.build
    publish_builds(redis_client, layout, [second], OPTIONS, spec=SPEC)  # second live again; first kept, no TTL
    before = dump_prefix(redis_client, layout)
    ttls = {key: redis_client.pttl(key) for key in before}
    # Publishing `first` again rewrites its kept keys; over the budget, they are restored.
    with pytest.raises(VerificationError):
        publish_builds(redis_client, layout, [first], PublishOptions(superseded_ttl=60, redis_budget_bytes=1))
    assert dump_prefix(redis_client, layout) == before
    assert {key: redis_client.pttl(key) for key in before} == ttls


def test_force_publishes_over_the_budget(redis_client, layout, caplog):
    options = PublishOptions(superseded_ttl=60, redis_budget_bytes=1, force=True)
    assert publish_builds(redis_client, layout, day_builds(DAY_ONE, countries=2)[:1], options).published
    assert "publishing anyway (--force)" in caplog.text


def test_health_and_prometheus_show_the_stored_report(redis_client, layout, redis_server, tmp_path: Path):
    settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix)
    publish_builds(redis_client, layout, day_builds(DAY_ONE, countries=4), OPTIONS, spec=SPEC)
    with TestClient(create_app(settings)) as api:
        assert api.get("/health").json()["storage"] is None  # never measured
    report = refresh_report(redis_client, layout, data_dir=tmp_path, budget=10**9, hour_retention_days=0)
    assert report is not None and read_report(redis_client, layout) == report

    app = create_app(settings)
    install_metrics(app)
    with TestClient(app) as api:
        health = api.get("/health").json()
        scraped = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(api.get("/metrics").text)
            for sample in family.samples
        }
    storage = health["storage"]
    assert storage["redis_bytes"] == report.redis_bytes
    assert storage["by_tier"] == report.by_tier and storage["by_metric"] == report.by_metric
    assert storage["budget_bytes"] == 10**9
    assert storage["days_until_budget"] == pytest.approx(report.days_until_budget)
    assert storage["growth_per_day_bytes"] == report.growth.per_day_bytes
    assert storage["measured_at"] == report.measured_at and storage["warning"] is None
    assert (
        scraped[("tally_redis_bytes", (("metric", "events"), ("tier", "hour")))] == report.by_metric["events"]["hour"]
    )
    assert scraped[("tally_redis_bytes", (("metric", ""), ("tier", "index")))] == report.by_tier["index"]
    assert sum(v for (name, _), v in scraped.items() if name == "tally_redis_bytes") == report.redis_bytes
    assert scraped[("tally_redis_budget_bytes", ())] == 10**9
    assert scraped[("tally_storage_days_until_budget", ())] == pytest.approx(report.days_until_budget)
    assert scraped[("tally_rollup_bytes", ())] == 0


def test_health_warns_when_the_budget_is_near(redis_client, layout, redis_server):
    publish_builds(redis_client, layout, day_builds(DAY_ONE, countries=4), OPTIONS, spec=SPEC)
    used = measure(redis_client, layout).redis_bytes
    with TestClient(create_app(Settings(redis_url=redis_server, redis_prefix=layout.prefix))) as api:
        status_before = api.get("/health").json()["status"]
        write_report(redis_client, layout, measure(redis_client, layout, budget=used + 10))
        health = api.get("/health").json()
    assert health["status"] == status_before  # a warning, not a failure
    assert "TALLY_REDIS_BUDGET_MB" in health["storage"]["warning"]


def test_tally_storage_json_measures_and_stores(redis_client, layout, redis_server, tmp_path, monkeypatch, capsys):
    publish_builds(redis_client, layout, day_builds(DAY_ONE, countries=2), OPTIONS, spec=SPEC)
    env = {"TALLY_REDIS_PREFIX": layout.prefix, "REDIS_URL": redis_server, "TALLY_DATA_DIR": str(tmp_path)}
    result = tally_in_process(["storage", "--json"], monkeypatch, capsys, TALLY_REDIS_BUDGET_MB="64", **env)
    assert result.code == 0, result.err
    document = json.loads(result.out)
    # Measured before it stored itself: the totals are of every other key.
    assert document["redis_bytes"] == sum(n for k, n in sizes_of(redis_client, layout).items() if k != layout.storage())
    assert document["budget_bytes"] == 64 * 1024 * 1024
    assert document["by_metric"]["events"]["hour"] > 0 and document["growth"]["day"] == "2026-11-20"
    assert read_report(redis_client, layout).measured_at == document["measured_at"]
    table = tally_in_process(["storage"], monkeypatch, capsys, **env)
    assert table.code == 0 and "events" in table.out and "growth per day" in table.out


def test_a_cli_publish_over_the_budget_exits_non_zero_with_the_message(
    redis_client, layout, redis_server, tmp_path, monkeypatch, capsys
):
    publish_builds(redis_client, layout, day_builds(DAY_ONE, countries=2)[:1], OPTIONS, spec=SPEC)
    before = dump_prefix(redis_client, layout)
    # The hours' rollups, as the job would have written them (no Spark here).
    monkeypatch.setattr(
        "cache.publish.read_hour_build", lambda data_dir, hour, spec: day_builds(DAY_ONE, countries=300)[hour.hour]
    )
    env = {"TALLY_REDIS_PREFIX": layout.prefix, "REDIS_URL": redis_server, "TALLY_DATA_DIR": str(tmp_path)}
    result = tally_in_process(
        ["publish", "--start", "2026-11-20T00:00Z", "--end", "2026-11-20T02:00Z"],
        monkeypatch,
        capsys,
        TALLY_REDIS_BUDGET_MB="0.001",
        **env,
    )
    assert result.code == 1
    assert "tally publish: error:" in result.err and "'events'" in result.err and "TALLY_REDIS_BUDGET_MB" in result.err
    assert dump_prefix(redis_client, layout) == before


def test_the_writer_user_can_measure_and_check_the_budget(redis_client, layout, redis_server, tmp_path):
    urls = create_users(redis_client, layout.prefix, redis_server)
    try:
        writer = redis.Redis.from_url(urls["REDIS_URL"])
        publish_builds(writer, layout, day_builds(DAY_ONE, countries=2)[:2], OPTIONS, spec=SPEC)
        report = refresh_report(writer, layout, data_dir=tmp_path, budget=10**9, hour_retention_days=0)
        assert report is not None and report.used_memory is None  # INFO is not the writer's
        with pytest.raises(VerificationError):
            publish_builds(
                writer, layout, day_builds(DAY_ONE, countries=50)[:2], PublishOptions(60, redis_budget_bytes=1)
            )
        reader = redis.Redis.from_url(urls["TALLY_API_REDIS_URL"])
        assert read_report(reader, layout) == report
        assert list(prefix_keys(redis_client, layout))
    finally:
        users = user_names(layout.prefix)
        redis_client.execute_command("ACL", "DELUSER", users.reader, users.writer)
