"""Request dependencies: the settings, the spec, the Redis client and the key layout.

Settings are those :func:`dashboard_api.app.create_app` resolved (the ones it was
given, else :func:`tally.core.settings.get_settings`), kept on the app.
"""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request

from cache.keys import KeyLayout
from tally.core.settings import Settings
from tally.core.spec import MetricSpec

# Each is ``async`` although none awaits: FastAPI runs a plain ``def`` dependency in its
# thread pool, and four hand-offs to a thread and back were about a tenth of an uncached read.


async def get_spec(request: Request) -> MetricSpec:
    """The spec loaded once when the app was created."""
    return request.app.state.spec


async def get_redis(request: Request) -> redis.Redis:
    """The client opened in the app's lifespan."""
    return request.state.redis


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with (``get_settings()`` unless create_app was given some).

    Read from the app, not through ``Depends(get_settings)``: FastAPI rebuilds an
    overridden dependency's signature analysis on every request.
    """
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_layout(settings: SettingsDep) -> KeyLayout:
    return KeyLayout(settings.redis_prefix)


SpecDep = Annotated[MetricSpec, Depends(get_spec)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
LayoutDep = Annotated[KeyLayout, Depends(get_layout)]
