"""The API as a way into the data: ACL users, bearer token, CORS, binding, and what errors reveal."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from cache.acl import acl_lines, create_users, user_names
from cache.builds import HourBuild, build_id
from cache.days import rebuild_days
from cache.freshness import INPUT_CHANGED, mark_pending
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from cache.rollback import rollback_hour
from cache.webhooks import relay
from dashboard_api import create_app
from dashboard_api.event_hub import EventHub, Published
from tally.app import local
from tally.app.processes import stop
from tally.core.settings import DEFAULT_SPEC_PATH, Settings, get_settings
from tally.core.spec import load_spec
from tests.support.net import free_port

SPEC = load_spec(DEFAULT_SPEC_PATH)
HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)
RANGE = {"grain": "hour", "start": "2026-11-20T10:00Z", "end": "2026-11-20T11:00Z"}
ROOT = Path(__file__).resolve().parents[1]


def build(events: float) -> HourBuild:
    values = {"events": {"_": events}}
    return HourBuild(HOUR, build_id(values, {}), values, {}, {"input_fingerprint": f"fp{int(events)}"})


@pytest.fixture
def acl_urls(redis_client, layout, redis_server):
    urls = create_users(redis_client, layout.prefix, redis_server)
    yield urls
    users = user_names(layout.prefix)
    redis_client.execute_command("ACL", "DELUSER", users.reader, users.writer)


def test_the_writer_can_do_everything_the_jobs_do_and_nothing_else(acl_urls, layout, redis_client):
    writer = redis.Redis.from_url(acl_urls["REDIS_URL"])
    publish_builds(writer, layout, [build(1)], PublishOptions(superseded_ttl=60), spec=SPEC)
    publish_builds(writer, layout, [build(2)], PublishOptions(superseded_ttl=60), spec=SPEC)
    assert rollback_hour(writer, layout, HOUR, spec=SPEC) == build(1).build
    rebuild_days(writer, layout, SPEC, [HOUR.date()])
    mark_pending(writer, layout, [HOUR], {HOUR: INPUT_CHANGED})
    # Webhooks are relayed by the publisher, with its own user (no receiver: a refused connection).
    assert relay(writer, layout, ["http://127.0.0.1:9/hook"], None, backoff=()).as_stats()["failed"] == 1
    assert writer.get(layout.webhook_cursor()) is not None
    with pytest.raises(redis.exceptions.NoPermissionError):
        writer.set("not-tally:key", "x")  # outside the prefix
    with pytest.raises(redis.exceptions.NoPermissionError):
        writer.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        writer.keys("*")
    assert redis_client.exists(layout.pointer())


def test_the_api_reads_as_a_user_that_cannot_write(acl_urls, layout, redis_server):
    publish_builds(
        redis.Redis.from_url(acl_urls["REDIS_URL"]), layout, [build(3)], PublishOptions(superseded_ttl=60), spec=SPEC
    )
    settings = Settings(
        redis_url=acl_urls["REDIS_URL"], api_redis_url=acl_urls["TALLY_API_REDIS_URL"], redis_prefix=layout.prefix
    )
    with TestClient(create_app(settings)) as api:
        # Every route works through the read-only user ...
        assert api.get("/v1/metrics/events", params=RANGE).json()["series"][0]["points"][0]["value"] == 3
        assert (
            api.get(
                "/v1/metrics/events", params={"grain": "day", "start": "2026-11-20", "end": "2026-11-21"}
            ).status_code
            == 200
        )
        assert api.get("/v1/runs", params={"start": "2026-11-20T10:00Z", "end": "2026-11-20T11:00Z"}).status_code == 200
        day = {"grain": "day", "start": "2026-11-20", "end": "2026-11-21"}
        retention = {"cohort": "new_users", "returning": "returning_users", "periods": "1", **day}
        assert api.get("/v1/retention", params=retention).status_code == 200
        assert api.get("/v1/funnel", params={"steps": "viewers,carters,buyers", **day}).status_code == 200
        assert api.get("/health").json()["redis"] == "ok"
        # The event stream's reader (one per process) follows the stream as this user too.
        assert asyncio.run(first_event_seen(acl_urls["TALLY_API_REDIS_URL"], layout, acl_urls["REDIS_URL"]))
        # ... and the API's own connection cannot change or enumerate anything.
        connection: redis.Redis = api.app_state["redis"]
        for attempt in (
            lambda: connection.set(layout.pointer(), "x"),
            lambda: connection.hset(layout.pointer(), "x", "y"),
            lambda: connection.delete(layout.meta()),
            lambda: connection.flushdb(),
            lambda: connection.keys("*"),
            lambda: connection.get("another-app:secret"),
            lambda: connection.eval("return 1", 0),
            lambda: connection.xadd(layout.events(), {"type": "published"}),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()


async def first_event_seen(reader_url: str, layout: KeyLayout, writer_url: str) -> bool:
    """Start an EventHub as the read-only user, publish as the writer, and see the event arrive."""
    hub = EventHub(reader_url, layout)
    try:
        assert await hub.wait_ready(5)
        async with hub.subscribe() as subscription:
            writer = redis.Redis.from_url(writer_url)
            await asyncio.to_thread(publish_builds, writer, layout, [build(4)], PublishOptions(superseded_ttl=60))
            writer.close()
            item = await asyncio.wait_for(subscription.queue.get(), 10)
        return isinstance(item, Published) and item.event.type == "revised"
    finally:
        await hub.stop()


def test_readme_shows_the_acl_lines_tally_redis_acl_prints():
    assert acl_lines("tally", "<api-password>", "<writer-password>") in (ROOT / "README.md").read_text()


def test_the_redis_the_stack_starts_gets_the_users(monkeypatch, tmp_path: Path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    # Set (not deleted) so monkeypatch restores both after ensure_redis() exports the users' URLs.
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("TALLY_API_REDIS_URL", "")
    get_settings.cache_clear()
    try:
        assert local.ensure_redis(tmp_path)
        users_file = tmp_path / "redis" / "users.json"
        assert users_file.stat().st_mode & 0o077 == 0  # the passwords are this user's only
        urls = json.loads(users_file.read_text())
        assert os.environ["REDIS_URL"] == urls["REDIS_URL"] != url
        assert get_settings().api_read_url == urls["TALLY_API_REDIS_URL"]
        layout = KeyLayout(get_settings().redis_prefix)
        publish_builds(redis.Redis.from_url(urls["REDIS_URL"]), layout, [build(4)], PublishOptions(superseded_ttl=60))
        reader = redis.Redis.from_url(urls["TALLY_API_REDIS_URL"])
        assert reader.exists(layout.pointer())
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set(layout.pointer(), "x")
    finally:
        stop(tmp_path / "run", "redis")
        get_settings.cache_clear()


@pytest.fixture
def published(redis_client, layout, redis_server):
    publish_builds(redis_client, layout, [build(5)], PublishOptions(superseded_ttl=60))
    return Settings(redis_url=redis_server, redis_prefix=layout.prefix)


def test_bearer_token_guards_everything_but_health(published: Settings):
    settings = Settings(**published.model_dump(exclude={"api_token"}), api_token="s3cret-token")
    with TestClient(create_app(settings)) as api:
        for path in ("/v1/metrics", "/v1/metrics/events", "/docs", "/openapi.json"):
            response = api.get(path, params=RANGE)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        assert api.get("/v1/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert api.get("/v1/metrics", headers={"Authorization": "s3cret-token"}).status_code == 401
        ok = api.get("/v1/metrics/events", params=RANGE, headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json()["series"][0]["points"][0]["value"] == 5
        assert api.get("/health").status_code == 200
        assert "s3cret-token" not in api.get("/v1/metrics").text


def test_no_token_by_default(published: Settings):
    with TestClient(create_app(published)) as api:
        assert api.get("/v1/metrics/events", params=RANGE).status_code == 200


def test_cors_is_closed_by_default_and_follows_the_allowlist(published: Settings):
    origin = {"Origin": "https://dash.example"}
    with TestClient(create_app(published)) as api:
        response = api.get("/v1/metrics/events", params=RANGE, headers=origin)
        assert "access-control-allow-origin" not in response.headers
    settings = Settings(
        **published.model_dump(exclude={"api_token", "cors_origins"}),
        cors_origins="https://dash.example",
        api_token="t",
    )
    with TestClient(create_app(settings)) as api:
        preflight = api.options(
            "/v1/metrics/events",
            headers={
                **origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://dash.example"
        response = api.get("/v1/metrics/events", params=RANGE, headers={**origin, "Authorization": "Bearer t"})
        assert response.headers["access-control-allow-origin"] == "https://dash.example"
        assert "etag" in response.headers["access-control-expose-headers"].lower()
        other = api.get(
            "/v1/metrics/events", params=RANGE, headers={"Origin": "https://evil.example", "Authorization": "Bearer t"}
        )
        assert "access-control-allow-origin" not in other.headers
        refused = api.options(
            "/v1/metrics/events", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert refused.status_code == 400
        # Writes stay refused whatever the origin.
        assert api.post("/v1/metrics/events", headers={**origin, "Authorization": "Bearer t"}).status_code == 405


def test_binds_loopback_by_default():
    assert Settings().api_host == "127.0.0.1"


def test_errors_reveal_no_password_and_no_traceback(layout, caplog):
    settings = Settings(api_redis_url="redis://tally-api:hunter2-secret@127.0.0.1:1/0", redis_prefix=layout.prefix)
    with TestClient(create_app(settings)) as api:
        for path in ("/v1/metrics/events", "/health"):
            response = api.get(path, params=RANGE)
            assert response.status_code == 503, response.text
            assert "hunter2-secret" not in response.text and "Traceback" not in response.text
            assert "***" in response.text
    assert "hunter2-secret" not in caplog.text
