"""``tally.client``: the Tally HTTP API from Python, with only httpx and pandas (``pip install tally[client]``).

>>> from tally.client import Client
>>> tally = Client("http://127.0.0.1:8000", token=None)
>>> frame = tally.series("revenue", start="2026-11-20", end="2026-11-27", grain="day", group_by="country")

Nothing here imports Redis, FastAPI, Spark or the rest of Tally: a notebook or a
service installs this alone (tests/test_client.py checks it in a fresh interpreter).
"""

from tally.client.api import Client, Event
from tally.client.http import ClientStats, TallyError
from tally.client.sse import Message, SSEParser

__all__ = ["Client", "ClientStats", "Event", "Message", "SSEParser", "TallyError"]
