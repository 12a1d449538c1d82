"""`/docs` and `/redoc` come from the service itself: no CDN, a strict CSP, typed assets
(issue 21 point 3)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from taskflow_kit.app import create_service_app
from taskflow_kit.docs import SOURCES
from taskflow_kit.tokens import TokenConfig

CONFIG = TokenConfig(secret="docs-test-secret-0123456789abcdef-xyz", issuer="t", audience="t")


class References(HTMLParser):
    """Every URL a page loads (scripts, styles, icons, images) and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "spec-url", "data-openapi-url"):
            if values.get(name):
                self.urls.append(str(values[name]))
        self._in_script = tag == "script" and not values.get("src")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = create_service_app(
        service="docs-test", title="Docs test", version="1", description="", token_config=CONFIG
    )
    return TestClient(app)


def csp(response: object) -> dict[str, list[str]]:
    header = response.headers["content-security-policy"]  # type: ignore[attr-defined]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_page_loads_only_same_origin_files_under_a_strict_policy(
    client: TestClient, page: str
) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    refs = References()
    refs.feed(response.text)
    assert refs.urls, response.text
    for url in refs.urls:
        assert url.startswith("/"), url  # this origin only
        assert not url.startswith("//"), url
    assert "/openapi.json" in refs.urls
    assert refs.inline_scripts == []  # nothing inline to run
    assert not re.search(r"https?://|cdn", response.text, re.I), response.text

    policy = csp(response)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    for values in policy.values():
        assert all(value.startswith("'") or value in ("data:", "blob:") for value in values)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"

    # Every file the page names is served, with its type, cacheable forever at that version.
    for url in refs.urls:
        if not url.startswith("/docs/assets/"):
            continue
        asset = client.get(url)
        assert asset.status_code == 200, url
        expected = {
            ".js": "text/javascript; charset=utf-8",
            ".css": "text/css; charset=utf-8",
            ".png": "image/png",
        }["." + url.split("?")[0].rsplit(".", 1)[1]]
        assert asset.headers["content-type"] == expected, url
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert "immutable" in asset.headers["cache-control"]


def test_the_assets_are_the_locked_packages_files_and_compress(client: TestClient) -> None:
    page = client.get("/docs").text
    bundle_url = re.search(r'src="(/docs/assets/swagger-ui-bundle\.js\?v=\w+)"', page)
    assert bundle_url is not None
    plain = client.get(bundle_url.group(1), headers={"Accept-Encoding": "identity"})
    assert plain.content == SOURCES["swagger-ui-bundle.js"].read_bytes()
    assert b"SwaggerUIBundle" in plain.content
    compressed = client.get(bundle_url.group(1), headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert compressed.content == plain.content  # httpx decodes it
    redoc = client.get("/docs/assets/redoc.standalone.js", headers={"Accept-Encoding": "identity"})
    assert redoc.status_code == 200
    assert redoc.headers["cache-control"] == "no-cache"  # an unversioned URL is revalidated
    assert b"Redoc" in redoc.content


@pytest.mark.parametrize(
    "path", ["/docs/assets/nothing.js", "/docs/assets/..%2Fapp.py", "/docs/assets/docs.py"]
)
def test_only_the_known_files_are_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_fastapis_cdn_pages_are_gone(client: TestClient) -> None:
    assert client.get("/docs/oauth2-redirect").status_code == 404
    spec = client.get("/openapi.json").json()
    assert not any(path.startswith(("/docs", "/redoc")) for path in spec["paths"])
