"""The web app's file serving: versioned immutable assets, ETag/304, gzip, safe paths, CSP."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest
from api_gateway.web import WEB_DIR, WebAssets, web_router
from fastapi import FastAPI
from taskflow_kit.errors import install_error_handlers

PAGE = """<!doctype html><html><head>
<link rel="stylesheet" href="{{asset:app.css}}">
{{importmap}}
{{modulepreload}}
<script type="module" src="{{asset:js/app.js}}"></script>
</head><body></body></html>"""


def make_app(root: Path) -> FastAPI:
    return make_app_with(WebAssets(root))


def make_app_with(assets: WebAssets) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(web_router(assets))
    return app


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "js").mkdir()
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "app.css").write_text("body { color: black; }\n" * 100)
    (tmp_path / "js" / "app.js").write_text('import { x } from "./util.js";\nconsole.log(x);\n')
    (tmp_path / "js" / "util.js").write_text("export const x = 1;\n")
    (tmp_path / ".secret.js").write_text("nope")
    (tmp_path / "notes.md").write_text("not a served type")
    return tmp_path


def client_for(root: Path) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=make_app(root))
    return httpx.AsyncClient(transport=transport, base_url="http://web.test")


def versions(html: str) -> dict[str, str]:
    return dict(re.findall(r"/assets/([\w/.-]+)\?v=([0-9a-f]{16})", html))


async def test_page_names_every_asset_by_its_content(site: Path) -> None:
    async with client_for(site) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    named = versions(page.text)
    assert set(named) == {"app.css", "js/app.js", "js/util.js"}
    for name, version in named.items():
        assert version == hashlib.sha256((site / name).read_bytes()).hexdigest()[:16]
    importmap = re.search(r'<script type="importmap">(.*?)</script>', page.text, re.S)
    assert importmap is not None
    imports = json.loads(importmap.group(1))["imports"]
    assert imports["/assets/js/util.js"] == f"/assets/js/util.js?v={named['js/util.js']}"
    assert page.text.count('rel="modulepreload"') == 2
    # The one inline script is allowed by its hash, nothing else inline, nothing external.
    digest = base64.b64encode(hashlib.sha256(importmap.group(1).encode()).digest()).decode()
    policy = page.headers["content-security-policy"]
    assert f"script-src 'self' 'sha256-{digest}'" in policy
    assert "connect-src 'self'" in policy
    assert "default-src 'self'" in policy


async def test_versioned_assets_are_immutable_and_plain_ones_revalidate(site: Path) -> None:
    async with client_for(site) as client:
        named = versions((await client.get("/")).text)
        versioned = await client.get(f"/assets/js/util.js?v={named['js/util.js']}")
        plain = await client.get("/assets/js/util.js")
        wrong = await client.get("/assets/js/util.js?v=0000000000000000")
    assert versioned.status_code == 200
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["content-type"] == "text/javascript; charset=utf-8"
    assert versioned.text == "export const x = 1;\n"
    assert plain.headers["cache-control"] == "no-cache"
    assert wrong.headers["cache-control"] == "no-cache"
    assert versioned.headers["etag"] == plain.headers["etag"]


@pytest.mark.parametrize("path", ["/", "/assets/app.css", "/assets/js/app.js"])
async def test_a_matching_etag_answers_304(site: Path, path: str) -> None:
    async with client_for(site) as client:
        first = await client.get(path)
        etag = first.headers["etag"]
        again = await client.get(path, headers={"If-None-Match": etag})
        weak = await client.get(path, headers={"If-None-Match": f'"other", W/{etag}'})
        other = await client.get(path, headers={"If-None-Match": '"other"'})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == first.headers["cache-control"]
    assert weak.status_code == 304
    assert other.status_code == 200


async def test_text_is_gzipped_for_clients_that_accept_it(site: Path) -> None:
    async with client_for(site) as client:
        zipped = await client.get("/assets/app.css", headers={"Accept-Encoding": "gzip"})
        plain = await client.get("/assets/app.css", headers={"Accept-Encoding": "identity"})
        head = await client.head("/assets/app.css", headers={"Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == (site / "app.css").read_text()  # httpx decodes it
    assert int(zipped.headers["content-length"]) < len(plain.content)
    assert "content-encoding" not in plain.headers
    assert "accept-encoding" in zipped.headers["vary"].lower()
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(plain.content)
    assert gzip.decompress(gzip.compress(plain.content)) == plain.content


@pytest.mark.parametrize(
    "path",
    [
        "/assets/.secret.js",
        "/assets/notes.md",
        "/assets/index.html",
        "/assets/missing.js",
        "/assets/js/../../index.html",
        "/assets/js/%2e%2e/app.css",
        "/assets/js",
        "/assets/",
    ],
)
async def test_only_servable_files_inside_the_root_are_served(site: Path, path: str) -> None:
    (site.parent / "outside.js").write_text("outside")
    async with client_for(site) as client:
        response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 404


def test_names_that_leave_the_root_resolve_to_nothing(site: Path) -> None:
    (site.parent / "outside.js").write_text("outside")
    (site / "link.js").symlink_to(site.parent / "outside.js")
    assets = WebAssets(site)
    for name in ["../outside.js", "link.js", "/etc/passwd", "js//app.js", "js\\app.js", "a\x00.js"]:
        assert assets.asset(name) is None, name


async def test_requests_never_touch_the_files(site: Path) -> None:
    """Assets are read once: a request looks up the snapshot, whatever happens on disk."""
    assets = WebAssets(site)
    transport = httpx.ASGITransport(app=make_app_with(assets))
    async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as client:
        first = await client.get("/")
        util = versions(first.text)["js/util.js"]
        (site / "js" / "util.js").unlink()
        (site / "index.html").unlink()
        again = await client.get("/")
        module = await client.get(f"/assets/js/util.js?v={util}")
    assert again.status_code == 200
    assert again.text == first.text
    assert module.text == "export const x = 1;\n"


async def test_an_edited_file_is_served_after_the_next_scan_under_a_new_version(
    site: Path,
) -> None:
    assets = WebAssets(site, watch=True, interval=0.01)
    transport = httpx.ASGITransport(app=make_app_with(assets))
    async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as client:
        before = versions((await client.get("/")).text)["js/util.js"]
        watcher = assets.watch_task()
        assert watcher is not None
        try:
            (site / "js" / "util.js").write_text("export const x = 2; // edited\n")
            after = before
            for _ in range(500):  # the watcher scans every 10 ms; give it up to 5 s
                after = versions((await client.get("/")).text)["js/util.js"]
                if after != before:
                    break
                await asyncio.sleep(0.01)
        finally:
            watcher.cancel()
        body = await client.get(f"/assets/js/util.js?v={after}")
    assert after != before
    assert body.text == "export const x = 2; // edited\n"


def test_without_watching_there_is_no_watcher(site: Path) -> None:
    assert WebAssets(site).watch_task() is None


async def test_the_real_app_is_a_few_files() -> None:
    """First paint needs the page and its stylesheet; every module is preloaded."""
    async with client_for(WEB_DIR) as client:
        page = await client.get("/")
        named = versions(page.text)
        for name, version in named.items():
            asset = await client.get(f"/assets/{name}?v={version}")
            assert asset.status_code == 200, name
    assert page.status_code == 200
    assert "app.css" in named
    modules = [name for name in named if name.endswith(".js")]
    assert len(modules) <= 10
    assert 'rel="stylesheet"' in page.text
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page.text)
