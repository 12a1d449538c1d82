"""The web app's static files: `/` (the page) and `/assets/...` (its CSS and ES modules).

No build step: the files in `api-gateway/web/` are served as they are, except that the page's
placeholders are filled in with versioned asset URLs (`/assets/app.css?v=<hash>`) and an import
map that gives every ES module its versioned URL. A versioned URL names one content forever, so
it is cached for a year (`immutable`); the page itself and unversioned URLs are revalidated on
every use (`no-cache`) and answer 304 to a matching `If-None-Match`. First paint therefore
needs the page and its stylesheet; the modules load in parallel (`modulepreload`), and a
returning visitor's browser sends one conditional request.

Files are read, hashed and gzipped once per change (size and mtime are checked on each request),
so an edited file is served at once without restarting the gateway.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response
from taskflow_kit.errors import NotFound

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
PAGE = "index.html"
ASSETS_PREFIX = "/assets/"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = {".html", ".css", ".js", ".svg", ".txt"}
MIN_GZIP_BYTES = 1024

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# The page talks to its own origin only (REST and the WebSocket): the policy makes an external
# request impossible, not merely absent. The import map is the one inline script (hashed).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    etag: str
    media_type: str
    version: str
    stamp: tuple[int, int]


def _version(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def _build(body: bytes, suffix: str, stamp: tuple[int, int]) -> Asset:
    version = _version(body)
    gzipped = None
    if suffix in COMPRESSIBLE and len(body) >= MIN_GZIP_BYTES:
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
    return Asset(
        body=body,
        gzipped=gzipped,
        etag=f'"{version}"',
        media_type=MEDIA_TYPES.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0] or "",
        version=version,
        stamp=stamp,
    )


class WebAssets:
    """The files under `root`, read on first use and again whenever one changes on disk."""

    def __init__(self, root: Path = WEB_DIR) -> None:
        self.root = root.resolve()
        self._assets: dict[str, Asset] = {}
        self._page: Asset | None = None
        self._page_stamp: tuple[tuple[str, str], ...] = ()
        self.content_security_policy = ""

    def _resolve(self, name: str) -> Path | None:
        """The file for a relative asset name, or None when it is not a servable file inside
        the root (hidden files, unknown types, `..`, symlinks out of the root)."""
        if not name or name.startswith("/") or "\\" in name or "\x00" in name:
            return None
        parts = name.split("/")
        if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            return None
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root) or path.suffix not in MEDIA_TYPES:
            return None
        if not path.is_file() or path.name == PAGE:
            return None
        return path

    def asset(self, name: str) -> Asset | None:
        path = self._resolve(name)
        if path is None:
            self._assets.pop(name, None)
            return None
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._assets.get(name)
        if cached is not None and cached.stamp == stamp:
            return cached
        asset = _build(path.read_bytes(), path.suffix, stamp)
        self._assets[name] = asset
        return asset

    def _modules(self) -> list[str]:
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*.js")
            if self._resolve(path.relative_to(self.root).as_posix()) is not None
        )

    def url(self, name: str) -> str:
        asset = self.asset(name)
        if asset is None:
            raise FileNotFoundError(f"web asset {name!r} is missing")
        return f"{ASSETS_PREFIX}{name}?v={asset.version}"

    def page(self) -> Asset:
        """`index.html` with its placeholders filled in:

        - `{{asset:NAME}}` → the versioned URL of `NAME`;
        - `{{importmap}}` → an import map from every module's plain URL to its versioned one
          (so `import "./api.js"` inside a module fetches the versioned, immutable file);
        - `{{modulepreload}}` → a `<link rel="modulepreload">` per module.
        """
        source = self.root / PAGE
        stat = source.stat()
        modules = self._modules()
        versions = tuple(
            (name, asset.version) for name in modules if (asset := self.asset(name)) is not None
        )
        stamp = ((PAGE, f"{stat.st_mtime_ns}:{stat.st_size}"), *versions)
        if self._page is not None and self._page_stamp == stamp:
            return self._page
        html = source.read_text(encoding="utf-8")
        imports = {f"{ASSETS_PREFIX}{name}": self.url(name) for name in modules}
        importmap = json.dumps({"imports": imports}, indent=1, sort_keys=True)
        preload = "\n".join(
            f'<link rel="modulepreload" href="{self.url(name)}">' for name in modules
        )
        html = html.replace("{{importmap}}", f'<script type="importmap">{importmap}</script>')
        html = html.replace("{{modulepreload}}", preload)
        while "{{asset:" in html:
            start = html.index("{{asset:")
            end = html.index("}}", start)
            html = html[:start] + self.url(html[start + 8 : end]) + html[end + 2 :]
        digest = base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode()
        self.content_security_policy = (
            "default-src 'self'; "
            f"script-src 'self' 'sha256-{digest}'; "
            "style-src 'self'; img-src 'self' data:; font-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'"
        )
        self._page = _build(html.encode(), ".html", (0, 0))
        self._page_stamp = stamp
        return self._page


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def _respond(
    request: Request, asset: Asset, cache_control: str, extra: dict[str, str] | None = None
) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    headers.update(extra or {})
    if _etag_matches(request.headers.get("if-none-match"), asset.etag):
        return Response(status_code=304, headers=headers)
    body = asset.body
    accepts = request.headers.get("accept-encoding", "")
    if asset.gzipped is not None and "gzip" in accepts.lower():
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=asset.media_type)
    return Response(content=body, status_code=200, headers=headers, media_type=asset.media_type)


def web_router(assets: WebAssets | None = None) -> APIRouter:
    """`GET /` (the app) and `GET /assets/{name}` (its files), kept out of the OpenAPI spec."""
    files = assets or WebAssets()
    router = APIRouter(include_in_schema=False)

    @router.api_route("/", methods=["GET", "HEAD"])
    async def page(request: Request) -> Response:
        asset = files.page()
        headers = SECURITY_HEADERS | {"Content-Security-Policy": files.content_security_policy}
        return _respond(request, asset, REVALIDATE, headers)

    @router.api_route("/assets/{name:path}", methods=["GET", "HEAD"])
    async def asset(name: str, request: Request) -> Response:
        found = files.asset(name)
        if found is None:
            raise NotFound(f"No web asset {name!r}")
        versioned = request.query_params.get("v") == found.version
        headers = {"X-Content-Type-Options": "nosniff"}
        return _respond(request, found, IMMUTABLE if versioned else REVALIDATE, headers)

    return router
