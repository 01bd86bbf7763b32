"""Tally's Airflow asset: what the publishing DAGs announce and what downstream DAGs schedule on.

Every publish that made hours live emits one event on the asset ``tally://<prefix>/metrics``
(``<prefix>`` is ``TALLY_REDIS_PREFIX``), with the hours in its ``extra``::

    {"prefix": "tally", "hours": ["2026-11-27T10:00:00Z", ...], "revised": [...], "rehydrated": 0}

``hours`` are the hours the task made live, oldest first; ``revised`` those of them whose new
build replaced data already served; ``rehydrated`` the number of hours an empty prefix was
refilled with from the rollups first (what was served before Redis lost it: not announced again).

The publishing tasks declare the asset alias :data:`ALIAS_NAME` as their outlet and attach
the asset to it at run time, because the prefix is a runtime setting a DAG file cannot read
while it is parsed (DAG files import only Airflow at top level). That also decides what an
empty publish does: a task whose outlet is an alias emits an event only for the assets it
adds, so a publish that changed nothing emits **no** event, and no downstream DAG runs for
numbers that did not change. A DAG scheduled on the asset itself, e.g.
``schedule=[Asset("tally://tally/metrics")]``, is triggered by these events all the same.

Airflow is imported inside the functions: ``tally`` (the CLI, the API) installs without it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

# The alias every publishing DAG declares as outlet; dags/*.py spell it literally (no imports at parse time).
ALIAS_NAME = "tally-metrics"


def metrics_asset_uri(prefix: str) -> str:
    """The asset of the metrics published under the Redis ``prefix``."""
    return f"tally://{prefix}/metrics"


def publish_extra(prefix: str, published: Mapping[str, Any]) -> dict[str, Any] | None:
    """The asset event's ``extra`` for a publish task's result (``publish_hour_texts``); None if nothing changed."""
    hours = sorted(published.get("published", []))
    if not hours:
        return None
    return {
        "prefix": prefix,
        "hours": hours,
        "revised": sorted(published.get("revised", [])),
        "rehydrated": int(published.get("rehydrated", 0)),
    }


def announce_publish(alias_events: Any, published: Mapping[str, Any]) -> dict[str, Any] | None:
    """Attach this deployment's asset event to the task's alias outlet (``outlet_events[alias]``).

    Returns the extra sent, or None when nothing was published (no event, see the module doc).
    """
    from airflow.sdk import Asset

    from tally.core.settings import get_settings

    prefix = get_settings().redis_prefix
    uri = metrics_asset_uri(prefix)
    extra = publish_extra(prefix, published)
    if extra is None:
        log.info("nothing published: no event on %s", uri)
        return None
    alias_events.add(Asset(uri), extra=extra)
    log.info("announced %d hour(s) on %s (revised: %s)", len(extra["hours"]), uri, extra["revised"])
    return extra
