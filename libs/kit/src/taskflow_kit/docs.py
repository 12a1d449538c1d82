"""`/docs` (Swagger UI) and `/redoc` (ReDoc) served by the service itself, with no CDN.

FastAPI's own pages load both from a CDN at a floating version, on the origin that holds the
session, with no CSP. Here the files come from the `fastapi-offline` package (pinned in uv.lock
by hash: Swagger UI 5.32.6, ReDoc 2.5.3) and are served under `/docs/assets/` with versioned,
immutable URLs; the pages carry a Content-Security-Policy that allows scripts from this origin
only (Swagger UI is started by `swagger-init.js`, not an inline script) and no request to any
other origin, so the pages also work offline. docs/security.md, "API docs pages".
"""

from __future__ import annotations

import gzip
import hashlib
import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request, Response

from taskflow_kit.errors import NotFound

ASSETS_PREFIX = "/docs/assets/"
_VENDOR = Path(fastapi_offline.__file__).resolve().parent / "static"
_OWN = Path(__file__).resolve().parent / "docs_static"
SOURCES: dict[str, Path] = {
    "swagger-ui-bundle.js": _VENDOR / "swagger-ui-bundle.js",
    "swagger-ui.css": _VENDOR / "swagger-ui.css",
    "redoc.standalone.js": _VENDOR / "redoc.standalone.js",
    "favicon.png": _VENDOR / "favicon.png",
    "swagger-init.js": _OWN / "swagger-init.js",
}
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}

# Scripts from this origin only (no inline script, no eval); styles may be inline because both
# UIs set style attributes and ReDoc injects its styles at run time (style cannot run code);
# ReDoc's search runs in a worker made from a blob. Nothing may be fetched from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class DocsAsset:
    body: bytes
    gzipped: bytes
    media_type: str
    version: str


@cache
def docs_asset(name: str) -> DocsAsset | None:
    """One of the docs pages' files, read and compressed once per process."""
    path = SOURCES.get(name)
    if path is None:
        return None
    body = path.read_bytes()
    return DocsAsset(
        body=body,
        gzipped=gzip.compress(body, compresslevel=6, mtime=0),
        media_type=MEDIA_TYPES[path.suffix],
        version=hashlib.sha256(body).hexdigest()[:16],
    )


def asset_url(request: Request, name: str) -> str:
    asset = docs_asset(name)
    assert asset is not None, name
    return f"{request.scope.get('root_path', '')}{ASSETS_PREFIX}{name}?v={asset.version}"


def _page(request: Request, title: str, head: str, body: str) -> Response:
    page = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f'<link rel="icon" type="image/png" href="{asset_url(request, "favicon.png")}">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def install_docs_pages(app: FastAPI) -> None:
    """`/docs`, `/redoc` and their files under `/docs/assets/`, for the app's `openapi_url`
    (create the app with `docs_url=None, redoc_url=None` so FastAPI's CDN pages are not added)."""

    def openapi_url(request: Request) -> str:
        return html.escape(f"{request.scope.get('root_path', '')}{app.openapi_url}")

    async def swagger_ui(request: Request) -> Response:
        head = f'<link rel="stylesheet" href="{asset_url(request, "swagger-ui.css")}">\n'
        body = (
            f'<div id="swagger-ui" data-openapi-url="{openapi_url(request)}"></div>\n'
            f'<script src="{asset_url(request, "swagger-ui-bundle.js")}"></script>\n'
            f'<script src="{asset_url(request, "swagger-init.js")}"></script>\n'
        )
        return _page(request, f"{app.title} - Swagger UI", head, body)

    async def redoc(request: Request) -> Response:
        body = (
            f'<redoc spec-url="{openapi_url(request)}"></redoc>\n'
            f'<script src="{asset_url(request, "redoc.standalone.js")}"></script>\n'
        )
        return _page(request, f"{app.title} - ReDoc", "", body)

    async def asset(name: str, request: Request) -> Response:
        found = docs_asset(name)
        if found is None:
            raise NotFound(f"No docs asset {name!r}")
        versioned = request.query_params.get("v") == found.version
        headers = {
            "Cache-Control": IMMUTABLE if versioned else "no-cache",
            "ETag": f'"{found.version}"',
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept-Encoding",
        }
        body = found.body
        if "gzip" in request.headers.get("accept-encoding", "").lower():
            body = found.gzipped
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=found.media_type, headers=headers)

    if app.openapi_url is None:
        return
    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
    app.add_api_route(ASSETS_PREFIX + "{name}", asset, methods=["GET"], include_in_schema=False)
