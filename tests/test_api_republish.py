"""A republished hour switches what the API serves, and the old build is kept for rollback."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from tally.core.layout import hour_field
from tests.support import api as support
from tests.support.api import AS_OF_REPUBLISH, BUILD_R_V1, EVENTS_R_V2, HOUR_R, T_REPUBLISH, rollup, series, values

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings


# --- republishing -----------------------------------------------------------------


def test_republish_switches_value_and_keeps_old_build(
    api: TestClient, redis_client: redis.Redis, api_layout: KeyLayout
) -> None:
    params = {"start": "2026-11-26T08:00:00Z", "end": "2026-11-26T09:00:00Z"}
    assert values(series(api, "signups", **params)) == [1]
    new_build = rollup(HOUR_R, EVENTS_R_V2)
    assert new_build.build != BUILD_R_V1.build
    publish_builds(redis_client, api_layout, [new_build], PublishOptions(superseded_ttl=60), now=T_REPUBLISH)
    after = series(api, "signups", **params)
    assert values(after) == [2] and after["as_of"] == AS_OF_REPUBLISH
    hour = hour_field(HOUR_R)
    old = BUILD_R_V1.build
    old_keys = [api_layout.manifest(old, hour), api_layout.values(old, hour, "signups")]
    for key in old_keys:  # kept for rollback, not expired
        assert redis_client.ttl(key) == -1
    assert redis_client.lindex(api_layout.history(hour), 1) == old.encode()
    assert redis_client.ttl(api_layout.values(new_build.build, hour, "signups")) == -1
