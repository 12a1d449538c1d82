"""Browser test helpers: launch settings, a recorder of opened pages (their requests and the
bearer tokens they send), what the app keeps in web storage, and its session cookie."""

from __future__ import annotations

import json
import os
from typing import Any

CHROMIUM = os.environ.get("TASKFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1366, "height": 860}
PHONE = {"width": 375, "height": 812}
# Playwright's own waits (expect, wait_for_*) give up after this many milliseconds.
TIMEOUT_MS = 15_000


class Pages:
    """Opens browser contexts (separate storage: separate people) on the gateway's URL and
    records every request each page makes, so a test can check none left the gateway."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[Any] = []
        self.requests: list[tuple[str, str]] = []
        self.errors: list[str] = []

    def open(
        self, viewport: dict[str, int] = DESKTOP, path: str = "/", base_url: str | None = None
    ) -> Any:
        context = self.browser.new_context(viewport=viewport, base_url=base_url or self.base_url)
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("request", lambda request: self._record(page, request))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(path)
        return page

    def _record(self, page: Any, request: Any) -> None:
        self.requests.append((request.method, request.url))
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            _BEARERS[id(page)] = authorization.removeprefix("Bearer ")

    def close(self) -> None:
        for context in self.contexts:
            context.close()


# The access token each page sent last: the app keeps it in memory only, so a test learns it
# the way the server does.
_BEARERS: dict[int, str] = {}


def access_token(page: Any) -> str:
    """The bearer token the page sent with its latest API request."""
    return _BEARERS[id(page)]


def web_storage(page: Any) -> dict[str, str]:
    """Everything the page keeps in localStorage and sessionStorage."""
    raw = page.evaluate(
        """() => JSON.stringify(Object.fromEntries([
            ...Object.entries(localStorage).map(([k, v]) => ['local:' + k, v]),
            ...Object.entries(sessionStorage).map(([k, v]) => ['session:' + k, v]),
        ]))"""
    )
    return dict(json.loads(raw))


def assert_no_token_stored(page: Any) -> None:
    """Neither storage holds a token: nothing JWT-shaped, nothing the page sent as a bearer."""
    stored = web_storage(page)
    known = _BEARERS.get(id(page))
    for key, value in stored.items():
        assert "eyJ" not in value, f"a JWT in {key}"
        assert not known or known not in value, f"the access token in {key}"


def session_cookie(page: Any) -> dict[str, Any] | None:
    """The session cookie as the browser holds it (scripts in the page cannot read it)."""
    for cookie in page.context.cookies():
        if cookie["name"] == "taskflow_session":
            return dict(cookie)
    return None
