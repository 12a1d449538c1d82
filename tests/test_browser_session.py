"""The web app's cookie session through the real gateway: Set-Cookie reaches the browser,
the Cookie header reaches user-service, and the CSRF checks hold behind the proxy.
(The browser itself is driven in tests/browser.)"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import httpx
import pytest

from tests.harness import ALL_SERVICES, ServiceProcess, User, register_and_login, require_services

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

API = "/api/v1"


def browser_headers(gateway: ServiceProcess) -> dict[str, str]:
    origin = urlsplit(gateway.url)
    return {"X-Requested-With": "TaskFlow", "Origin": f"{origin.scheme}://{origin.netloc}"}


def open_session(browser: httpx.Client, gateway: ServiceProcess, person: User) -> None:
    response = browser.post(
        f"{API}/auth/session",
        json={"username": person.username, "password": person.password},
        headers=browser_headers(gateway),
    )
    assert response.status_code == 200, response.text
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    morsel = cookie["taskflow_session"]
    assert (morsel["httponly"], morsel["samesite"], morsel["path"]) == (
        True,
        "strict",
        "/api/v1/auth",
    )
    assert "refresh_token" not in response.json()


def test_the_cookie_session_works_through_the_gateway(
    gateway: ServiceProcess, client: httpx.Client
) -> None:
    person = register_and_login(client, "cookie")
    with httpx.Client(base_url=gateway.url, timeout=10.0) as browser:
        open_session(browser, gateway, person)
        first = browser.cookies["taskflow_session"]

        refreshed = browser.post(f"{API}/auth/session/refresh", headers=browser_headers(gateway))

        assert refreshed.status_code == 200, refreshed.text
        assert browser.cookies["taskflow_session"] != first
        me = client.get(
            f"{API}/users/me",
            headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"},
        )
        assert me.json()["username"] == person.username

        ended = browser.delete(f"{API}/auth/session", headers=browser_headers(gateway))
        assert ended.status_code == 204
        assert "taskflow_session" not in browser.cookies


def test_another_origin_cannot_use_the_cookie_through_the_gateway(
    gateway: ServiceProcess, client: httpx.Client
) -> None:
    person = register_and_login(client, "csrf")
    with httpx.Client(base_url=gateway.url, timeout=10.0) as browser:
        open_session(browser, gateway, person)
        foreign = {"X-Requested-With": "TaskFlow", "Origin": "http://localhost:3000"}
        bare = {"Origin": browser_headers(gateway)["Origin"]}

        for headers in (foreign, bare):
            response = browser.post(f"{API}/auth/session/refresh", headers=headers)
            assert response.status_code == 403, response.text
            assert response.headers["content-type"] == "application/problem+json"
        assert browser.post(
            f"{API}/auth/session/refresh", headers=browser_headers(gateway)
        ).is_success
