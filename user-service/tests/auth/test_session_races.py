"""Tokens issued while an account changes, and logout with only an access token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from taskflow_kit.testing import lock_waiters
from user_service.auth.issuing import hash_refresh_token
from user_service.models import User

PASSWORD = "correct horse battery staple"


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def until(check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def demotion_in_progress(app: FastAPI, user_id: int) -> AsyncIterator[AsyncConnection]:
    """An admin demotion that has updated the row (holding its lock) and not yet committed;
    it commits when the block ends."""
    async with app.state.engine.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(update(User).where(User.id == user_id).values(is_superuser=False))
        yield connection
        await transaction.commit()


async def finished_or_blocked(request: asyncio.Task[Any], app: FastAPI) -> bool:
    """The request has finished, or waits for a row lock (the demotion's)."""
    return request.done() or bool(await lock_waiters(app.state.pool))


@pytest.mark.parametrize("route", ["login", "refresh"])
async def test_a_token_issued_racing_a_demotion_never_claims_the_old_admin_right(
    client: httpx.AsyncClient, api, app: FastAPI, route: str
) -> None:
    admin = await api.account(username="root", admin=True)
    assert claims(admin.tokens["access_token"])["is_superuser"] is True
    body = (
        {"username": "root", "password": PASSWORD}
        if route == "login"
        else {"refresh_token": admin.tokens["refresh_token"]}
    )

    async with demotion_in_progress(app, admin.id):
        issuing = asyncio.create_task(client.post(f"/api/v1/auth/{route}", json=body))
        # The request either finished (reading the row as it was: the hole) or waits for the
        # demotion's row lock; only then does the demotion commit.
        await until(
            lambda: finished_or_blocked(issuing, app),
            what=f"the {route} to finish or to wait for the demotion",
        )
    response = await issuing
    assert response.status_code == 200, response.text
    assert claims(response.json()["access_token"])["is_superuser"] is False


async def test_logout_with_only_the_access_token_ends_that_session(
    client: httpx.AsyncClient, api, app: FastAPI
) -> None:
    account = await api.account(username="alice")
    other = await api.login(username="alice")  # a second session of the same user

    response = await client.post("/api/v1/auth/logout", headers=account.headers)

    assert response.status_code == 204, response.text
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    async with app.state.engine.connect() as connection:
        family = claims(account.tokens["access_token"])["sid"]
        revoked = await connection.scalar(
            text("SELECT count(*) FROM refresh_token WHERE family_id = :f AND revoked_at IS NULL"),
            {"f": family},
        )
    assert revoked == 0

    async def access_refused() -> bool:
        me = await client.get("/api/v1/auth/me", headers=account.headers)
        return me.status_code == 401

    await until(access_refused, what="the session's access token to be refused")
    still = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert still.status_code == 200, "the other session goes on"


async def test_logout_without_a_body_or_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/logout")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_logout_with_a_refresh_token_ignores_a_stale_access_token(
    client: httpx.AsyncClient, api
) -> None:
    """A client sending its expired access token beside the refresh token still logs out."""
    account = await api.account(username="alice")
    response = await client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": account.tokens["refresh_token"]},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert response.status_code == 204


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


@asynccontextmanager
async def holding_token(app: FastAPI, token: str) -> AsyncIterator[AsyncConnection]:
    """Another request's transaction that has claimed `token` (holding its row lock); it
    commits when the block ends."""
    async with app.state.engine.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(
            text(
                "UPDATE refresh_token SET used_at = coalesce(used_at, now()) WHERE token_hash = :h"
            ),
            {"h": hash_refresh_token(token)},
        )
        yield connection
        await transaction.commit()


async def live_tokens(app: FastAPI, token: str) -> int:
    """How many tokens of `token`'s session are neither used nor revoked."""
    async with app.state.engine.connect() as connection:
        return int(
            await connection.scalar(
                text(
                    "SELECT count(*) FROM refresh_token WHERE revoked_at IS NULL"
                    " AND family_id = (SELECT family_id FROM refresh_token WHERE token_hash = :h)"
                ),
                {"h": hash_refresh_token(token)},
            )
        )


async def test_a_reuse_queues_on_the_token_another_reuse_holds_before_locking_the_session(
    client: httpx.AsyncClient, api, app: FastAPI
) -> None:
    """Two reuses of one token: the second waits for the first while holding none of the
    session's tokens, so the first revokes the session without waiting (before, the second
    locked the session's older tokens first and the two deadlocked: a 503)."""
    account = await api.account(username="alice")
    first = account.tokens["refresh_token"]
    second = (await refresh(client, first)).json()["refresh_token"]
    third = (await refresh(client, second)).json()["refresh_token"]

    async with holding_token(app, second) as other_reuse:
        reuse = asyncio.create_task(refresh(client, second))
        await until(lambda: finished_or_blocked(reuse, app), what="the reuse to wait")
        # The other reuse revokes the session now; none of its tokens may be held by the
        # waiting request (a wait here would be the deadlock's first half).
        await other_reuse.execute(text("SET LOCAL lock_timeout = '500ms'"))
        revoked = await other_reuse.execute(
            text(
                "UPDATE refresh_token SET revoked_at = now() WHERE revoked_at IS NULL"
                " AND family_id = (SELECT family_id FROM refresh_token WHERE token_hash = :h)"
            ),
            {"h": hash_refresh_token(second)},
        )
        assert revoked.rowcount == 3
    response = await reuse
    assert response.status_code == 401, response.text
    assert "reuse" in response.json()["detail"]
    assert (await refresh(client, third)).status_code == 401


async def test_a_reuse_also_revokes_the_successor_a_concurrent_rotation_issues(
    client: httpx.AsyncClient, api, app: FastAPI
) -> None:
    """A stolen token presented while the victim's refresh is between its claim and its
    commit: the session's revocation waits for the rotation, then revokes the token the
    rotation issued too (it was not there when the revocation began)."""
    account = await api.account(username="alice")
    stolen = account.tokens["refresh_token"]
    current = (await refresh(client, stolen)).json()["refresh_token"]

    async with holding_token(app, current) as rotation:
        reuse = asyncio.create_task(refresh(client, stolen))
        await until(lambda: finished_or_blocked(reuse, app), what="the reuse to wait")
        assert not reuse.done()
        await rotation.execute(
            text(
                "INSERT INTO refresh_token (user_id, family_id, token_hash, expires_at)"
                " SELECT user_id, family_id, :successor, now() + interval '1 day'"
                " FROM refresh_token WHERE token_hash = :h"
            ),
            {"successor": "s" * 64, "h": hash_refresh_token(current)},
        )
    response = await reuse
    assert response.status_code == 401, response.text
    assert await live_tokens(app, current) == 0


async def test_a_refresh_racing_a_password_change_waits_for_it_holding_no_token(
    client: httpx.AsyncClient, api, app: FastAPI
) -> None:
    """A password change locks the user's row, then revokes the user's tokens; a refresh
    takes the same two in the same order, so it waits before claiming its token (before, it
    claimed the token and then waited for the row: a deadlock with the revocation)."""
    account = await api.account(username="alice")

    async with app.state.engine.connect() as change:
        transaction = await change.begin()
        await change.execute(
            update(User).where(User.id == account.id).values(hashed_password=User.hashed_password)
        )
        refreshing = asyncio.create_task(refresh(client, account.tokens["refresh_token"]))
        await until(lambda: finished_or_blocked(refreshing, app), what="the refresh to wait")
        assert not refreshing.done()
        await change.execute(text("SET LOCAL lock_timeout = '500ms'"))
        revoked = await change.execute(
            text(
                "UPDATE refresh_token SET revoked_at = now()"
                " WHERE user_id = :u AND revoked_at IS NULL"
            ),
            {"u": account.id},
        )
        assert revoked.rowcount == 1
        await transaction.commit()
    response = await refreshing
    assert response.status_code == 401, response.text
