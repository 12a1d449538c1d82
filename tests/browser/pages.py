"""Browser test helpers: launch settings, a recorder of opened pages, the app's stored tokens."""

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
        page.on("request", lambda request: self.requests.append((request.method, request.url)))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(path)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def stored_session(page: Any) -> dict[str, Any]:
    """The tokens the app keeps in localStorage."""
    raw = page.evaluate("localStorage.getItem('taskflow.session')")
    return json.loads(raw) if raw else {}
