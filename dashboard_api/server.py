"""Running the API under uvicorn (what ``tally serve`` calls)."""

from __future__ import annotations

from typing import Any

import uvicorn

from dashboard_api.app import create_app
from tally.core.settings import Settings

# The server configuration `tally serve` uses, and the one `make bench` gives its
# bare FastAPI peer, so the two are compared like for like. "auto" picks uvloop and
# httptools when installed (uvicorn[standard]). The per-request access log is off:
# formatting and writing a line costs about a third of a cached read's time
# (see docs/performance.md); `tally serve --access-log` turns it on. A stop (SIGTERM)
# waits at most 3 s for open connections: a `GET /v1/events` stream never ends by
# itself, and its client reconnects (with Last-Event-ID, missing nothing) elsewhere.
UVICORN_OPTIONS: dict[str, Any] = {"loop": "auto", "http": "auto", "access_log": False, "timeout_graceful_shutdown": 3}


def serve(
    host: str | None = None, port: int = 8000, settings: Settings | None = None, access_log: bool = False
) -> None:
    """Serve the API until interrupted, on ``host`` or the configured TALLY_API_HOST (127.0.0.1)."""
    app = create_app(settings)
    bind = host or app.state.settings.api_host
    uvicorn.run(app, host=bind, port=port, **{**UVICORN_OPTIONS, "access_log": access_log})
