"""`/docs` works with no internet: Swagger UI is served from the vendored copy under /static/vendor/swagger-ui.

FastAPI's own /docs loads Swagger UI from a CDN and is a blank page offline (this
machine has no internet, so the browser test below would fail against it twice: no
UI, and a CDN request). /redoc (also a CDN page) is not served.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser

import httpx
import pytest
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from bench.server import start_server, stop
from dashboard_api import create_app
from dashboard_api.page import STATIC_DIR
from tally.core.settings import Settings
from tests.conftest import TEST_PREFIX
from tests.support.browser import RESOURCE_URLS_JS, console_errors
from tests.support.net import free_port

SWAGGER_DIR = STATIC_DIR / "vendor" / "swagger-ui"
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class _References(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.fixture
def api(redis_server: str) -> Iterator[TestClient]:
    # /docs and /openapi.json read nothing from Redis; the prefix only keeps this test's keys apart.
    with TestClient(create_app(Settings(redis_url=redis_server, redis_prefix=f"{TEST_PREFIX}-docs"))) as client:
        yield client


def test_docs_reference_only_local_assets_and_those_are_served(api: TestClient) -> None:
    docs = api.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert not re.findall(r"(?:https?:)?//[^\s'\"<>]+", docs.text), "an absolute URL in the /docs page"
    assets = references(docs.text)
    assert sorted(assets) == [
        "/static/vendor/swagger-ui/favicon-32x32.png",
        "/static/vendor/swagger-ui/swagger-ui-bundle.js",
        "/static/vendor/swagger-ui/swagger-ui.css",
    ]
    for url in assets:
        response = api.get(url)
        suffix = url[url.rindex(".") :]
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url
        assert response.content == (SWAGGER_DIR / url.rsplit("/", 1)[1]).read_bytes(), url
    assert "url: '/openapi.json'" in docs.text and api.get("/openapi.json").status_code == 200
    # Swagger UI's default validator badge is an image from validator.swagger.io on any non-local host.
    assert '"validatorUrl": null' in docs.text
    assert api.head("/docs").status_code == 200
    assert api.get("/redoc").status_code == 404


def test_docs_behind_a_proxy_prefix_load_their_assets_under_it(redis_server: str) -> None:
    app = create_app(Settings(redis_url=redis_server, redis_prefix=f"{TEST_PREFIX}-docs"))
    with TestClient(app, root_path="/tally") as client:
        docs = client.get("/docs")
    assert docs.status_code == 200
    assert all(url.startswith("/tally/static/vendor/swagger-ui/") for url in references(docs.text))
    assert "url: '/tally/openapi.json'" in docs.text


def test_with_a_token_the_swagger_assets_stay_open(redis_server: str) -> None:
    settings = Settings(redis_url=redis_server, redis_prefix=f"{TEST_PREFIX}-docs", api_token="docs-token")
    with TestClient(create_app(settings)) as client:
        assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert client.get("/docs").status_code == 401  # the page itself is behind the token, like the schema
        assert client.get("/docs", headers={"Authorization": "Bearer docs-token"}).status_code == 200


def test_the_vendored_swagger_ui_is_the_version_its_readme_names() -> None:
    bundle = (SWAGGER_DIR / "swagger-ui-bundle.js").read_text()
    [version] = set(re.findall(r'PACKAGE_VERSION:"([0-9.]+)"', bundle))
    readme = (STATIC_DIR / "vendor" / "README.md").read_text()
    assert f"| {version} |" in readme and f"swagger-ui-dist@{version}" in readme
    for notice in ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"):
        assert (SWAGGER_DIR / notice).stat().st_size > 0, notice


def test_docs_render_in_a_browser_from_this_origin_only(redis_server: str, browser: webdriver.Chrome) -> None:
    port = free_port()
    server = start_server(redis_server, f"{TEST_PREFIX}-docs-{uuid.uuid4().hex[:12]}", port)
    base = f"http://127.0.0.1:{port}"
    try:
        browser.get_log("browser")
        browser.get(f"{base}/docs")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock-summary-path"))
        assert "Tally" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
        paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock-summary-path")}
        assert {"/health", "/v1/metrics", "/v1/metrics/{name}"} <= {p.replace("\u200b", "") for p in paths}
        fetched = browser.execute_script(RESOURCE_URLS_JS)
        assert f"{base}/static/vendor/swagger-ui/swagger-ui-bundle.js" in fetched
        assert f"{base}/openapi.json" in fetched
        assert [url for url in fetched if not url.startswith(f"{base}/")] == []
        assert not console_errors(browser)
        assert httpx.get(f"{base}/redoc").status_code == 404
    finally:
        stop(server)
