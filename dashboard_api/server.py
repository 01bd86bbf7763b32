"""Running the API under uvicorn (what ``tally serve`` calls)."""

from __future__ import annotations

import uvicorn

from dashboard_api.app import create_app
from tally.settings import Settings


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    """Serve the API until interrupted."""
    # "auto" picks uvloop and httptools when installed (uvicorn[standard]), else asyncio/h11.
    uvicorn.run(create_app(settings), host=host, port=port, loop="auto", http="auto")
