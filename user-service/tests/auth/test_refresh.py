"""Refresh-token rotation, reuse detection, logout and the events that end sessions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from taskflow_kit.events import Event
from taskflow_kit.tokens import issue_token
from user_service.models import OUTBOX, RefreshToken

PASSWORD = "correct horse battery staple"


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_the_pair(client: httpx.AsyncClient, api) -> None:
    account = await api.account(username="alice")

    response = await refresh(client, account.tokens["refresh_token"])

    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"] != account.tokens["refresh_token"]
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert me.json()["username"] == "alice"
    assert (await refresh(client, pair["refresh_token"])).status_code == 200


async def test_reusing_a_rotated_token_revokes_its_family(client: httpx.AsyncClient, api) -> None:
    account = await api.account(username="alice")
    other_session = await api.login(username="alice")
    first = account.tokens["refresh_token"]
    second = (await refresh(client, first)).json()["refresh_token"]

    reuse = await refresh(client, first)

    assert reuse.status_code == 401
    assert reuse.headers["www-authenticate"] == "Bearer"
    assert "reuse" in reuse.json()["detail"]
    # The legitimate-looking successor is dead too: the thief and the victim both log in again.
    assert (await refresh(client, second)).status_code == 401
    # A separate login is a separate family and unaffected.
    assert (await refresh(client, other_session["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_of_one_token_let_at_most_one_through(
    client: httpx.AsyncClient, app: FastAPI, api
) -> None:
    account = await api.account(username="alice")
    token = account.tokens["refresh_token"]

    responses = await asyncio.gather(*(refresh(client, token) for _ in range(5)))

    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401, 401]
    async with app.state.engine.connect() as connection:
        live = await connection.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None))
        )
    assert live == 0  # the duplicates counted as reuse and revoked the family


async def test_logout_revokes_the_session(client: httpx.AsyncClient, api) -> None:
    account = await api.account(username="alice")
    token = account.tokens["refresh_token"]

    response = await client.post("/api/v1/auth/logout", json={"refresh_token": token})

    assert response.status_code == 204
    assert response.content == b""
    assert (await refresh(client, token)).status_code == 401
    again = await client.post("/api/v1/auth/logout", json={"refresh_token": token})
    assert again.status_code == 204


async def test_logout_with_an_unknown_token_is_still_204(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": "not-a-token"})
    assert response.status_code == 204


async def test_logout_requires_a_body(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/auth/logout", json={})).status_code == 422


async def test_an_access_token_cannot_refresh(client: httpx.AsyncClient, api) -> None:
    account = await api.account(username="alice")
    response = await refresh(client, account.tokens["access_token"])
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_garbage_and_expired_refresh_tokens_are_401(
    client: httpx.AsyncClient, app: FastAPI, api
) -> None:
    account = await api.account(username="alice")
    expired = issue_token(
        app.state.token_issuer.config,
        subject=str(account.id),
        token_type="refresh",
        ttl=timedelta(seconds=1),
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    assert (await refresh(client, "garbage")).status_code == 401
    assert (await refresh(client, expired)).status_code == 401


async def test_a_signed_but_never_issued_refresh_token_is_401(
    client: httpx.AsyncClient, app: FastAPI, api
) -> None:
    account = await api.account(username="alice")
    forged = issue_token(
        app.state.token_issuer.config,
        subject=str(account.id),
        token_type="refresh",
        ttl=timedelta(days=1),
    )
    response = await refresh(client, forged)
    assert response.status_code == 401
    assert "reuse" not in response.json()["detail"]


@pytest.mark.parametrize("subject", ["not-a-number", "999999", "99999999999999999999999"])
async def test_a_signed_refresh_token_for_no_such_user_is_401(
    client: httpx.AsyncClient, app: FastAPI, subject: str
) -> None:
    """The user's row is read first, by the token's subject: a subject that is no user id,
    or no user's, is 401 (an id past bigint's range included, never a 500)."""
    token = issue_token(
        app.state.token_issuer.config, subject=subject, token_type="refresh", ttl=timedelta(days=1)
    )
    response = await refresh(client, token)
    assert response.status_code == 401, response.text


async def test_password_change_revokes_every_refresh_token(client: httpx.AsyncClient, api) -> None:
    account = await api.account(username="alice")
    laptop = await api.login(username="alice")

    response = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=account.headers,
    )

    assert response.status_code == 204
    assert (await refresh(client, account.tokens["refresh_token"])).status_code == 401
    assert (await refresh(client, laptop["refresh_token"])).status_code == 401


async def test_deactivation_revokes_refresh_tokens(client: httpx.AsyncClient, api) -> None:
    admin = await api.account(username="root", admin=True)
    alice = await api.account(username="alice")

    response = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_active": False}, headers=admin.headers
    )

    assert response.status_code == 200
    assert (await refresh(client, alice.tokens["refresh_token"])).status_code == 401


async def test_a_deactivated_user_cannot_refresh_even_with_a_live_token(
    client: httpx.AsyncClient, api
) -> None:
    alice = await api.account(username="alice")
    await api.set_flags(alice.id, is_active=False)  # behind the service's back: tokens stay live

    assert (await refresh(client, alice.tokens["refresh_token"])).status_code == 401


async def test_refresh_tokens_are_stored_only_as_hashes(
    client: httpx.AsyncClient, app: FastAPI, api
) -> None:
    account = await api.account(username="alice")
    async with app.state.engine.connect() as connection:
        stored = (await connection.scalars(select(RefreshToken.token_hash))).all()
    assert len(stored) == 1
    assert len(stored[0]) == 64
    assert account.tokens["refresh_token"] not in stored


async def logged_out_reasons(app: FastAPI, session_id: str) -> list[str]:
    """The reasons of the `user.logged_out` events in the outbox for one login session."""
    async with app.state.engine.connect() as connection:
        payloads = (
            await connection.scalars(
                select(OUTBOX.c.payload).where(OUTBOX.c.type == "user.logged_out")
            )
        ).all()
    events = [Event.from_json(payload) for payload in payloads]
    return [event.data["reason"] for event in events if event.data["session_id"] == session_id]


async def test_a_reuse_commits_the_familys_revocation_and_its_event_with_the_401(
    client: httpx.AsyncClient, app: FastAPI, api
) -> None:
    """The one effect of a failing request that must stick: the rotation's transaction is
    committed, not rolled back, when it finds reuse."""
    account = await api.account(username="alice")
    first = account.tokens["refresh_token"]
    await refresh(client, first)
    claims = jwt.decode(account.tokens["access_token"], options={"verify_signature": False})
    session_id = claims["sid"]
    family = uuid.UUID(session_id)

    assert (await refresh(client, first)).status_code == 401

    async with app.state.engine.connect() as connection:
        live = await connection.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.family_id == family, RefreshToken.revoked_at.is_(None))
        )
    assert live == 0
    assert await logged_out_reasons(app, session_id) == ["refresh_token_reused"]


async def test_a_refresh_that_fails_after_claiming_rolls_the_claim_back(
    client: httpx.AsyncClient, api
) -> None:
    """A refresh refused after its token was claimed (the account is deactivated) leaves the
    token unused: once the account is active again it refreshes, and is not taken for reuse."""
    alice = await api.account(username="alice")
    await api.set_flags(alice.id, is_active=False)
    assert (await refresh(client, alice.tokens["refresh_token"])).status_code == 401

    await api.set_flags(alice.id, is_active=True)
    response = await refresh(client, alice.tokens["refresh_token"])

    assert response.status_code == 200, response.text
