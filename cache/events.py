"""Publish events: one entry in a capped Redis Stream per write a reader can see.

Every publish switch, rollback, and change of pending marks queues its event with
:func:`queue_event` on the pipeline of its own MULTI/EXEC, so the event and the
switch it reports are applied together or not at all: no event is ever lost,
early, or about a switch that did not happen (a SIGKILL between them is impossible
because there is no "between": Redis applies the transaction whole). The stream
(``{p}:events``) keeps about the last ``TALLY_EVENTS_KEEP`` entries; its ids are
the order of the writes.

An event's fields, all text (lists and maps as JSON):

- ``type``: ``published`` (new hours), ``revised`` (some hour's data replaced data
  already served), ``rolled_back``, ``pending`` (marks set or cleared),
  ``rehydrated`` (a rehydrate's switch);
- ``hours``: the hours it touches (``2026-11-27T10:00:00Z``); ``revised``: those of
  them whose served data changed; ``metrics``: the metrics whose data changed
  (every stored metric of the switched builds); empty for ``pending``, whose marks
  are per hour: an event without metrics concerns every metric of its hours;
- ``builds``: hour -> its live build after the write (empty for ``pending``);
- ``pending``: hour -> reason for marks set (``pending`` events), and ``cleared``;
- ``generation``: the ``{p}:generation`` token the same transaction set;
- ``at``: when (the publish time the pointers record).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cache.client import text
from cache.keys import KeyLayout

PUBLISHED, REVISED, ROLLED_BACK, PENDING, REHYDRATED = "published", "revised", "rolled_back", "pending", "rehydrated"
EVENT_TYPES: tuple[str, ...] = (PUBLISHED, REVISED, ROLLED_BACK, PENDING, REHYDRATED)


@dataclass(frozen=True)
class Event:
    type: str
    hours: Sequence[str]
    metrics: Sequence[str]
    generation: str
    at: str
    builds: Mapping[str, str] = field(default_factory=dict)
    revised: Sequence[str] = ()
    pending: Mapping[str, str] = field(default_factory=dict)
    cleared: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}; expected one of {', '.join(EVENT_TYPES)}")

    def fields(self) -> dict[str, str]:
        """The stream entry's fields."""
        return {
            "type": self.type,
            "hours": json.dumps(list(self.hours)),
            "metrics": json.dumps(sorted(self.metrics)),
            "builds": json.dumps(dict(self.builds), sort_keys=True),
            "revised": json.dumps(list(self.revised)),
            "pending": json.dumps(dict(self.pending), sort_keys=True),
            "cleared": json.dumps(list(self.cleared)),
            "generation": self.generation,
            "at": self.at,
        }

    def document(self) -> dict[str, Any]:
        """The event as JSON for clients (SSE ``data:``, webhooks)."""
        return {
            "type": self.type,
            "hours": list(self.hours),
            "metrics": sorted(self.metrics),
            "builds": dict(self.builds),
            "revised": list(self.revised),
            "pending": dict(self.pending),
            "cleared": list(self.cleared),
            "generation": self.generation,
            "at": self.at,
        }


def parse_event(fields: Mapping[bytes | str, bytes | str]) -> Event:
    """Inverse of :meth:`Event.fields` (a stream entry as redis-py returns it)."""
    values = {text(name): text(value) for name, value in fields.items()}
    return Event(
        type=values["type"],
        hours=json.loads(values["hours"]),
        metrics=json.loads(values["metrics"]),
        builds=json.loads(values.get("builds", "{}")),
        revised=json.loads(values.get("revised", "[]")),
        pending=json.loads(values.get("pending", "{}")),
        cleared=json.loads(values.get("cleared", "[]")),
        generation=values["generation"],
        at=values["at"],
    )


def queue_event(pipe: Any, layout: KeyLayout, event: Event, keep: int) -> None:
    """Queue the event's XADD on ``pipe`` (inside the MULTI of the write it reports), trimming to about ``keep``."""
    pipe.xadd(layout.events(), event.fields(), maxlen=max(1, keep), approximate=True)


def read_events(client: Any, layout: KeyLayout, after: str = "0-0", count: int = 1000) -> list[tuple[str, Event]]:
    """The events after stream id ``after`` (exclusive), oldest first, at most ``count``."""
    entries = client.xrange(layout.events(), min=f"({after}", max="+", count=count)
    return [(text(entry_id), parse_event(fields)) for entry_id, fields in entries]
