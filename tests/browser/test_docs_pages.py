"""`/docs` and `/redoc` of the gateway in a real browser: the merged operations render from
files the gateway serves itself, under its CSP, and Authorize / Try it out work (issue 21
point 3). Every request the pages make must go to the gateway: nothing from a CDN."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.pages import Pages
from tests.harness import register_and_login

pytestmark = pytest.mark.suite


def watch_console(page: Any) -> list[str]:
    """Console errors (a CSP violation is one) of `page` from now on."""
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return errors


# ReDoc's "API docs by Redocly" link shows this logo from its CDN, in code no option turns off:
# the page's CSP (img-src 'self' data:) refuses it before any connection, and the link is
# shown without it.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def follow_origins(page: Any, origin: str) -> tuple[list[str], list[str]]:
    """(URLs answered by another origin, URLs of other origins the browser tried)."""
    answered: list[str] = []
    tried: list[str] = []

    def other(url: str) -> bool:
        return not url.startswith(("data:", f"blob:http://{origin}/")) and (
            urlsplit(url).netloc != origin
        )

    page.on("response", lambda response: other(response.url) and answered.append(response.url))
    page.on("request", lambda request: other(request.url) and tried.append(request.url))
    return answered, tried


def test_swagger_ui_renders_the_merged_api_and_try_it_out_works(
    pages: Pages, client: httpx.Client, gateway: Any, screenshots: Path
) -> None:
    user = register_and_login(client, "swagger")
    page = pages.open(path="/health")
    console = watch_console(page)
    answered, tried = follow_origins(page, urlsplit(gateway.url).netloc)
    page.goto("/docs")
    # Operations of every service, merged by the gateway.
    for operation in ("/api/v1/auth/login", "/api/v1/tasks/", "/api/v1/stats/"):
        expect(page.locator(".opblock-summary-path", has_text=operation).first).to_be_visible()

    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux")
    dialog.locator("input#oauth_username").fill(user.username)
    dialog.locator("input#oauth_password").fill(user.password)
    dialog.locator("button.modal-btn.authorize").first.click()
    # Swagger UI posted the form to the gateway's login and holds the token: "Logout" shows.
    expect(dialog.locator("button.modal-btn", has_text="Logout").first).to_be_visible()
    dialog.locator("button.btn-done").first.click()

    path = page.locator(".opblock-summary-path", has_text="/api/v1/auth/me")
    me = page.locator(".opblock-get", has=path).first
    me.locator(".opblock-summary").click()
    me.get_by_role("button", name="Try it out").click()
    me.get_by_role("button", name="Execute").click()
    response = me.locator(".live-responses-table tr.response .response-col_status").first
    expect(response).to_have_text("200")
    expect(me.locator(".live-responses-table .microlight").first).to_contain_text(user.username)
    page.screenshot(path=str(screenshots / "docs-swagger.png"), full_page=False)

    page.goto("/redoc")
    expect(page.locator("h1", has_text="TaskFlow API").first).to_be_visible()
    expect(page.get_by_text("/api/v1/tasks/").first).to_be_attached()
    page.screenshot(path=str(screenshots / "docs-redoc.png"), full_page=False)

    assert answered == []  # nothing came from anywhere but the gateway
    assert set(tried) <= {REDOC_LOGO}, tried
    refused = [text for text in console if "Content Security Policy" in text]
    assert all(REDOC_LOGO in text for text in refused), refused  # the logo, nothing else
