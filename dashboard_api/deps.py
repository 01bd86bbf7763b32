"""Request dependencies: the spec, the Redis client and the key layout.

Settings come from :func:`tally.core.settings.get_settings` (``Depends(get_settings)``);
:func:`dashboard_api.app.create_app` overrides it with the settings it was given.
"""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request

from cache.keys import KeyLayout
from tally.core.settings import Settings, get_settings
from tally.core.spec import MetricSpec


def get_spec(request: Request) -> MetricSpec:
    """The spec loaded once when the app was created."""
    return request.app.state.spec


def get_redis(request: Request) -> redis.Redis:
    """The client opened in the app's lifespan."""
    return request.state.redis


def get_layout(settings: Annotated[Settings, Depends(get_settings)]) -> KeyLayout:
    return KeyLayout(settings.redis_prefix)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SpecDep = Annotated[MetricSpec, Depends(get_spec)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
LayoutDep = Annotated[KeyLayout, Depends(get_layout)]
