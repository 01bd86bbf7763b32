"""The read-only rule: only GET and HEAD are allowed, and HEAD is GET without a body."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from dashboard_api import create_app
from tally.core.settings import Settings
from tests.support import api as support
from tests.support.api import H_RANGE

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/metrics/revenue", "/health", "/nope"])
def test_only_get_and_head_are_allowed(api: TestClient, method: str, path: str) -> None:
    response = api.request(method, path, json={"x": 1})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("url", ["/v1/metrics", f"/v1/metrics/revenue?{H_RANGE}", "/health", "/openapi.json"])
def test_head_is_get_without_body(api: TestClient, url: str) -> None:
    response = api.head(url)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"].startswith("application/json")


def asgi_request(app: object, method: str, path: str) -> list[dict]:
    """The raw ASGI messages the app sends (TestClient itself drops HEAD bodies)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    return sent


@pytest.mark.parametrize("path", ["/v1/metrics", "/openapi.json"])
def test_head_sends_no_body_bytes(settings: Settings, path: str) -> None:
    app = create_app(settings)
    get = asgi_request(app, "GET", path)
    head = asgi_request(app, "HEAD", path)
    assert head[0]["status"] == 200
    assert dict(head[0]["headers"])[b"content-length"] == dict(get[0]["headers"])[b"content-length"]
    assert b"".join(m.get("body", b"") for m in get[1:])
    assert b"".join(m.get("body", b"") for m in head[1:]) == b""


def test_head_keeps_error_status(api: TestClient) -> None:
    response = api.head("/v1/metrics/nope?start=2026-11-27&end=2026-11-28")
    assert response.status_code == 404 and response.content == b""
