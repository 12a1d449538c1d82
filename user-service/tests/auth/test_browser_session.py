"""The web app's cookie session: refresh token in an HttpOnly cookie, CSRF checks, and a
session lifetime that refresh cannot extend. The JSON routes stay as API clients know them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import insert
from taskflow_kit.tokens import issue_token
from user_service.auth.issuing import hash_refresh_token
from user_service.models import RefreshToken

PASSWORD = "correct horse battery staple"
BROWSER = {"X-Requested-With": "TaskFlow", "Origin": "http://test"}


def session_cookie(response: httpx.Response) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    return cookie


async def open_session(client: httpx.AsyncClient, username: str = "alice") -> httpx.Response:
    return await client.post(
        "/api/v1/auth/session",
        json={"username": username, "password": PASSWORD},
        headers=BROWSER,
    )


async def test_sign_in_sets_an_httponly_strict_cookie_and_returns_only_the_access_token(
    client: httpx.AsyncClient, api
) -> None:
    await api.register(username="alice")

    response = await open_session(client)

    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body
    assert body["token_type"] == "bearer"
    assert datetime.fromisoformat(body["session_expires_at"]) > datetime.now(UTC)
    morsel = session_cookie(response)["taskflow_session"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == "/api/v1/auth"
    assert not morsel["secure"]  # off unless configured (plain-HTTP development)
    assert int(morsel["max-age"]) > 0
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json()["username"] == "alice"


async def test_the_cookie_is_secure_when_configured(make_api) -> None:
    async with make_api(session_cookie_secure=True) as api:
        await api.register(username="alice")
        response = await open_session(api.client)
    assert session_cookie(response)["taskflow_session"]["secure"] is True


async def test_the_json_login_is_unchanged_and_sets_no_cookie(
    client: httpx.AsyncClient, api
) -> None:
    await api.register(username="alice")

    response = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )

    assert set(response.json()) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert "set-cookie" not in response.headers


async def test_refresh_rotates_the_cookie_and_a_replayed_cookie_ends_the_session(
    client: httpx.AsyncClient, api
) -> None:
    await api.register(username="alice")
    first = session_cookie(await open_session(client))["taskflow_session"].value

    refreshed = await client.post("/api/v1/auth/session/refresh", headers=BROWSER)

    assert refreshed.status_code == 200, refreshed.text
    second = session_cookie(refreshed)["taskflow_session"].value
    assert second != first
    assert "refresh_token" not in refreshed.json()

    client.cookies.set("taskflow_session", first, path="/api/v1/auth")
    replayed = await client.post("/api/v1/auth/session/refresh", headers=BROWSER)
    assert replayed.status_code == 401
    assert session_cookie(replayed)["taskflow_session"]["max-age"] == "0"  # cookie removed
    client.cookies.set("taskflow_session", second, path="/api/v1/auth")
    assert (await client.post("/api/v1/auth/session/refresh", headers=BROWSER)).status_code == 401


async def test_refresh_without_a_cookie_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/session/refresh", headers=BROWSER)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://test"},  # no custom header: a plain cross-site form could send this
        {"X-Requested-With": "TaskFlow", "Origin": "https://evil.example"},
        {"X-Requested-With": "TaskFlow", "Origin": "null"},
        {"X-Requested-With": "TaskFlow", "Origin": "http://test.evil.example"},
    ],
)
async def test_cookie_routes_refuse_cross_site_requests(
    client: httpx.AsyncClient, api, headers: dict[str, str]
) -> None:
    await api.register(username="alice")
    assert (await open_session(client)).status_code == 200

    login = await client.post(
        "/api/v1/auth/session", json={"username": "alice", "password": PASSWORD}, headers=headers
    )
    refresh = await client.post("/api/v1/auth/session/refresh", headers=headers)
    logout = await client.delete("/api/v1/auth/session", headers=headers)

    assert [login.status_code, refresh.status_code, logout.status_code] == [403, 403, 403]
    assert "set-cookie" not in refresh.headers
    # The session survived the attempts.
    assert (await client.post("/api/v1/auth/session/refresh", headers=BROWSER)).status_code == 200


async def test_a_configured_origin_may_use_the_cookie_session(make_api) -> None:
    async with make_api(session_allowed_origins=["https://app.example.com"]) as api:
        await api.register(username="alice")
        response = await api.client.post(
            "/api/v1/auth/session",
            json={"username": "alice", "password": PASSWORD},
            headers={"X-Requested-With": "TaskFlow", "Origin": "https://app.example.com"},
        )
    assert response.status_code == 200


async def test_sign_out_revokes_the_session_and_removes_the_cookie(
    client: httpx.AsyncClient, api
) -> None:
    await api.register(username="alice")
    cookie = session_cookie(await open_session(client))["taskflow_session"].value

    response = await client.delete("/api/v1/auth/session", headers=BROWSER)

    assert response.status_code == 204
    assert session_cookie(response)["taskflow_session"]["max-age"] == "0"
    client.cookies.set("taskflow_session", cookie, path="/api/v1/auth")
    assert (await client.post("/api/v1/auth/session/refresh", headers=BROWSER)).status_code == 401


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def test_refresh_never_moves_the_session_end(make_api) -> None:
    """Before, every refresh issued a refresh token valid for the full 7 days from then, so a
    session refreshed now and then never ended."""
    async with make_api(session_max_lifetime_days=1, refresh_token_expire_days=7) as api:
        await api.register(username="alice")
        pair = await api.login(username="alice")
        first = claims(pair["refresh_token"])
        response = await api.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        second = claims(response.json()["refresh_token"])

    assert first["exp"] <= first["iat"] + 86400 + 1  # the absolute end, not 7 days
    assert second["exp"] <= first["exp"]
    assert second["sst"] == first["sst"]


async def test_a_session_past_its_absolute_end_cannot_refresh(
    client: httpx.AsyncClient, app: FastAPI, api
) -> None:
    alice = await api.account(username="alice")
    # A live, stored refresh token of a session that started 31 days ago (limit 30).
    started = datetime.now(UTC) - timedelta(days=31)
    token = issue_token(
        app.state.token_issuer.config,
        subject=str(alice.id),
        token_type="refresh",
        ttl=timedelta(days=7),
        claims={"sst": int(started.timestamp())},
    )
    async with app.state.engine.begin() as connection:
        await connection.execute(
            insert(RefreshToken).values(
                user_id=alice.id,
                family_id=uuid.uuid4(),
                token_hash=hash_refresh_token(token),
                expires_at=datetime.now(UTC) + timedelta(days=7),
            )
        )

    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})

    assert response.status_code == 401


async def test_token_responses_are_never_cached(client: httpx.AsyncClient, api) -> None:
    await api.register(username="alice")
    login = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    session = await open_session(client)
    session_refresh = await client.post("/api/v1/auth/session/refresh", headers=BROWSER)

    for response in (login, refreshed, session, session_refresh):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
