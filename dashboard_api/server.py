"""Running the API under uvicorn (what ``tally serve`` calls)."""

from __future__ import annotations

import uvicorn

from dashboard_api.app import create_app
from tally.settings import Settings


def serve(host: str | None = None, port: int = 8000, settings: Settings | None = None) -> None:
    """Serve the API until interrupted, on ``host`` or the configured TALLY_API_HOST (127.0.0.1)."""
    app = create_app(settings)
    bind = host or app.state.settings.api_host
    # "auto" picks uvloop and httptools when installed (uvicorn[standard]), else asyncio/h11.
    uvicorn.run(app, host=bind, port=port, loop="auto", http="auto")
