"""The web app's static files: `/` (the page) and `/assets/...` (its CSS and ES modules).

No build step: the files in `api-gateway/web/` are served as they are, except that the page's
placeholders are filled in with versioned asset URLs (`/assets/app.css?v=<hash>`) and an import
map that gives every ES module its versioned URL. A versioned URL names one content forever, so
it is cached for a year (`immutable`); the page itself and unversioned URLs are revalidated on
every use (`no-cache`) and answer 304 to a matching `If-None-Match`. First paint therefore
needs the page and its stylesheet; the modules load in parallel (`modulepreload`), and a
returning visitor's browser sends one conditional request.

Files are read, hashed and gzipped once at start-up; requests only look them up. In development
a background task re-scans the tree every second, so an edited file is served without
restarting the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import structlog
from fastapi import APIRouter, Request, Response
from taskflow_kit.errors import NotFound

logger = structlog.get_logger("api_gateway.web")

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
    """The files under `root`, read, hashed and gzipped once (`load`, at start-up) into a
    snapshot that requests only look up: no file system access per request. With `watch`
    (development) a background task re-scans the tree every `interval` seconds and swaps in a
    new snapshot when a file changed, so an edit is served without a restart."""

    def __init__(self, root: Path = WEB_DIR, *, watch: bool = False, interval: float = 1.0) -> None:
        self.root = root.resolve()
        self.watch = watch
        self.interval = interval
        self._assets: dict[str, Asset] = {}
        self._page: Asset | None = None
        self._stamp: tuple[tuple[str, tuple[int, int]], ...] | None = None
        self.content_security_policy = ""

    def _servable(self, path: Path) -> str | None:
        """The asset name of a file under the root, or None when it is not servable (hidden
        files, unknown types, the page itself, symlinks out of the root)."""
        name = path.relative_to(self.root).as_posix()
        if any(part.startswith(".") for part in name.split("/")):
            return None
        if path.suffix not in MEDIA_TYPES or path.name == PAGE:
            return None
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        return name

    def _scan(self) -> dict[str, tuple[Path, tuple[int, int]]]:
        files: dict[str, tuple[Path, tuple[int, int]]] = {}
        for path in sorted(self.root.rglob("*")):
            name = PAGE if path == self.root / PAGE else self._servable(path)
            if name is not None:
                stat = path.stat()
                files[name] = (path, (stat.st_mtime_ns, stat.st_size))
        return files

    def load(self) -> bool:
        """Scan the tree and rebuild what changed; True when anything did."""
        files = self._scan()
        stamp = tuple((name, stamp) for name, (_, stamp) in files.items())
        if stamp == self._stamp:
            return False
        assets: dict[str, Asset] = {}
        for name, (path, file_stamp) in files.items():
            if name == PAGE:
                continue
            cached = self._assets.get(name)
            if cached is not None and cached.stamp == file_stamp:
                assets[name] = cached
            else:
                assets[name] = _build(path.read_bytes(), path.suffix, file_stamp)
        self._assets = assets
        self._page = self._build_page()
        self._stamp = stamp
        return True

    async def run_watcher(self) -> None:
        """Re-scan every `interval` seconds (development), for as long as the app runs."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                if self.load():
                    logger.info("web_assets_reloaded")
            except OSError as exc:  # a file caught mid-save: the next scan sees it whole
                logger.warning("web_assets_scan_failed", error=str(exc))

    def watch_task(self) -> asyncio.Task[None] | None:
        """The watcher, started when watching is on."""
        return asyncio.create_task(self.run_watcher()) if self.watch else None

    def _loaded(self) -> None:
        if self._stamp is None:
            self.load()

    def asset(self, name: str) -> Asset | None:
        """The asset called `name` (relative to the root), or None: only names found by the
        scan exist, so no name can reach outside the root."""
        self._loaded()
        return self._assets.get(name)

    def url(self, name: str) -> str:
        asset = self._assets.get(name)
        if asset is None:
            raise FileNotFoundError(f"web asset {name!r} is missing")
        return f"{ASSETS_PREFIX}{name}?v={asset.version}"

    def page(self) -> Asset:
        """`index.html` with its placeholders filled in (see `_build_page`)."""
        self._loaded()
        assert self._page is not None
        return self._page

    def _build_page(self) -> Asset:
        """`index.html` with its placeholders filled in:

        - `{{asset:NAME}}` → the versioned URL of `NAME`;
        - `{{importmap}}` → an import map from every module's plain URL to its versioned one
          (so `import "./api.js"` inside a module fetches the versioned, immutable file);
        - `{{modulepreload}}` → a `<link rel="modulepreload">` per module.
        """
        html = (self.root / PAGE).read_text(encoding="utf-8")
        modules = sorted(name for name in self._assets if name.endswith(".js"))
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
        return _build(html.encode(), ".html", (0, 0))


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
