"""The dashboard page: ``/`` serves ``static/index.html``, ``/static/...`` its scripts, styles and vendored uPlot.

The page is a client of the public API like any other: it reads only ``/health``,
``/v1/metrics``, ``/v1/metrics/{name}`` and ``/v1/metrics/{name}/values/{dimension}``
from the browser, so nothing here reads Redis. Neither route is part of the OpenAPI
document, which describes the API only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")
STATIC_PATH = "/static"

# Everything the page loads comes from this origin; the API token the page may keep
# in localStorage is worth a policy that refuses injected scripts and styles.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # A token arrives once as ?token=...; no other site may see that URL.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # The page is tiny; revalidating it means a new release is picked up at once.
    "Cache-Control": "no-cache",
}


def install_page(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` and its assets under ``/static``."""
    app.add_api_route("/", dashboard_page, methods=["GET"], include_in_schema=False)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")


def dashboard_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
