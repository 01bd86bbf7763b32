"""Rules enforced before routing: read-only methods, and the optional bearer token.

Only GET and HEAD reach the app. Any other method on any path, known or not,
gets 405 with the JSON error body and ``Allow: GET, HEAD``. HEAD is served as GET
with the body dropped (RFC 9110: HEAD is GET without content), so every GET
route, ``/docs`` included, answers HEAD without a second route declaration.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard_api.errors import error_response

ALLOWED_METHODS: tuple[str, ...] = ("GET", "HEAD")
ALLOW_HEADER = ", ".join(ALLOWED_METHODS)


class ReadOnlyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"].upper()
        if method not in ALLOWED_METHODS:
            response = error_response(
                "method_not_allowed",
                f"{method} is not allowed: this API is read-only ({ALLOW_HEADER})",
                headers={"Allow": ALLOW_HEADER},
            )
            await response(scope, receive, send)
            return
        if method == "HEAD":
            await self.app({**scope, "method": "GET"}, receive, _without_body(send))
            return
        await self.app(scope, receive, send)


def _without_body(send: Send) -> Send:
    # Headers (Content-Length included) stay those of the GET, as HTTP requires.
    async def send_headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_headers_only


# Load balancers and the local stack probe /health without credentials; it reveals
# only freshness, never a metric. The dashboard page and its static files hold no
# data (the page asks for the token, then calls the API with it).
OPEN_PATHS: frozenset[str] = frozenset({"/health", "/"})
OPEN_PREFIXES: tuple[str, ...] = ("/static/",)


class BearerTokenMiddleware:
    """Every request but :data:`OPEN_PATHS` needs ``Authorization: Bearer <token>`` (TALLY_API_TOKEN)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        # Constant time: the comparison must not reveal how much of a guess was right.
        if not hmac.compare_digest(given, self.expected):
            response = error_response(
                "unauthorized",
                "this API needs `Authorization: Bearer <token>` (the server's TALLY_API_TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
