"""Browser fixtures: Playwright for Python driving Debian's Chromium against the whole suite.

The suite is the session's real processes (`tests/conftest.py`); the browser opens the gateway's
URL like a person would. Playwright never downloads a browser here: it launches
`/usr/bin/chromium` (installed by `.ci/run` when missing). Without it, these tests skip, except
under CI (`CI` set), where a missing browser fails the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ALL_SERVICES, require_services

require_services(*ALL_SERVICES)
sync_api = pytest.importorskip("playwright.sync_api")

from tests.browser.pages import CHROMIUM, CHROMIUM_ARGS, Pages  # noqa: E402


# Module scope: the sync API runs its own event loop while Playwright is up, and an
# asyncio test run after it in the same session would find that loop running.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the browser tests, not skip them")
        pytest.skip(message)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def pages(browser: Any, gateway: Any) -> Iterator[Pages]:
    opened = Pages(browser, gateway.url)
    try:
        yield opened
    finally:
        opened.close()
    assert not opened.errors, f"uncaught errors in the page: {opened.errors}"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: `TASKFLOW_SCREENSHOTS` (e.g. docs/screenshots), else a temp dir."""
    target = os.environ.get("TASKFLOW_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
