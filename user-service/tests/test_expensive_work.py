"""Bounds on the expensive work anyone can ask for: per-route budgets, a cap on concurrent
bcrypt runs, and refresh tokens that are pruned instead of kept for ever."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import insert, select
from structlog.testing import capture_logs
from user_service.auth.pruning import prune_refresh_tokens
from user_service.models import RefreshToken

PASSWORD = "correct horse battery staple"


def register_body(n: int) -> dict[str, str]:
    return {"username": f"user{n}", "email": f"user{n}@example.com", "password": PASSWORD}


async def test_registrations_per_address_have_a_budget(make_api) -> None:
    async with make_api(route_budgets_enabled=True, register_per_address_per_minute=3) as api:
        statuses = [
            (await api.client.post("/api/v1/auth/register", json=register_body(n))).status_code
            for n in range(4)
        ]
        refused = await api.client.post("/api/v1/users/", json=register_body(9))

    assert statuses == [201, 201, 201, 429]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["content-type"] == "application/problem+json"


async def test_logins_per_account_have_a_budget_even_when_they_succeed(make_api) -> None:
    async with make_api(route_budgets_enabled=True, login_per_account_per_minute=3) as api:
        await api.register(username="alice")
        statuses = [
            (
                await api.client.post(
                    "/api/v1/auth/login",
                    json={"username": "alice", "password": PASSWORD},
                    headers={"X-Forwarded-For": f"10.5.0.{n}"},
                )
            ).status_code
            for n in range(4)
        ]

    assert statuses == [200, 200, 200, 429]


async def test_refreshes_and_password_changes_have_budgets(make_api) -> None:
    async with make_api(
        route_budgets_enabled=True,
        refresh_per_address_per_minute=2,
        password_change_per_account_per_minute=1,
    ) as api:
        alice = await api.account(username="alice")
        refreshes = [
            (
                await api.client.post(
                    "/api/v1/auth/refresh", json={"refresh_token": "not-a-real-token"}
                )
            ).status_code
            for _ in range(3)
        ]
        changes = [
            (
                await api.client.post(
                    "/api/v1/users/me/password",
                    json={"current_password": f"guess-{n}", "new_password": "new passphrase"},
                    headers=alice.headers,
                )
            ).status_code
            for n in range(2)
        ]

    assert refreshes == [401, 401, 429]
    assert changes == [400, 429]


async def test_password_changes_per_address_have_a_budget(make_api) -> None:
    async with make_api(
        route_budgets_enabled=True,
        password_change_per_address_per_minute=2,
        password_change_per_account_per_minute=100,
    ) as api:
        people = [await api.account(username=f"user{n}") for n in range(3)]
        changes = [
            (
                await api.client.post(
                    "/api/v1/users/me/password",
                    json={"current_password": "wrong guess", "new_password": "new passphrase"},
                    headers={**person.headers, "X-Forwarded-For": "203.0.113.40"},
                )
            ).status_code
            for person in people
        ]

    assert changes == [400, 400, 429]


async def test_budgets_are_off_in_the_test_environment_by_default(api) -> None:
    assert api.app.state.route_budgets.enabled is False


async def test_hashing_beyond_the_concurrency_bound_answers_503(make_api) -> None:
    async with make_api(
        password_hash_concurrency=1, password_hash_queue_seconds=0.02, bcrypt_rounds=12
    ) as api:
        responses = await asyncio.gather(
            *(api.client.post("/api/v1/auth/register", json=register_body(n)) for n in range(4))
        )

    statuses = sorted(response.status_code for response in responses)
    assert statuses[0] == 201
    assert 503 in statuses
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"] == "application/problem+json"


async def test_expired_and_long_revoked_refresh_tokens_are_pruned_in_batches(api) -> None:
    alice = await api.account(username="alice")
    now = datetime.now(UTC)

    def token(**fields: object) -> dict[str, object]:
        return {
            "user_id": alice.id,
            "family_id": uuid.uuid4(),
            "expires_at": now + timedelta(days=1),
            "token_hash": uuid.uuid4().hex + uuid.uuid4().hex,
            "revoked_at": None,
            **fields,
        }

    engine = api.app.state.engine
    async with engine.begin() as connection:
        await connection.execute(
            insert(RefreshToken),
            [
                token(expires_at=now - timedelta(minutes=1), token_hash="e" * 64),
                token(expires_at=now - timedelta(days=3)),
                token(revoked_at=now - timedelta(days=2)),
                token(revoked_at=now - timedelta(minutes=5), token_hash="r" * 64),
                token(token_hash="l" * 64),
            ],
        )

    deleted = await prune_refresh_tokens(
        api.app.state.pool, batch=1, revoked_retention=timedelta(days=1)
    )

    assert deleted == 3
    async with engine.connect() as connection:
        kept = set((await connection.execute(select(RefreshToken.token_hash))).scalars())
    # The login's own token, a recently revoked one (reuse is still recognised) and a live one.
    assert {"r" * 64, "l" * 64} <= kept
    assert "e" * 64 not in kept
    assert len(kept) == 3


async def test_security_events_name_the_user_and_the_address(make_api) -> None:
    async with make_api(log_level="INFO") as api:
        events = await security_events_of_a_short_story(api.client, api)

    alice_id = events["password_changed"]["user_id"]
    assert isinstance(alice_id, int)
    assert events["login_failed"]["user_id"] == alice_id
    assert events["login_failed"]["address"] == "198.51.100.23"
    assert events["login_failed"]["log_level"] == "warning"
    assert events["refresh_token_reused"]["user_id"] == alice_id
    assert events["refresh_token_reused"]["address"] == "198.51.100.23"
    assert events["password_changed"]["address"] == "198.51.100.23"
    assert events["password_changed"]["log_level"] == "info"
    assert all(
        "password" not in key for entry in events.values() for key in entry if key != "event"
    )


async def security_events_of_a_short_story(client: httpx.AsyncClient, api) -> dict:
    alice = await api.account(username="alice")
    forwarded = {"X-Forwarded-For": "198.51.100.23"}

    with capture_logs() as logs:
        await client.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": "wrong password"},
            headers=forwarded,
        )
        await client.post(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": "another passphrase"},
            headers={**alice.headers, **forwarded},
        )
        # Revoked by the password change: presenting it again is reuse.
        revoked = alice.tokens["refresh_token"]
        await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": revoked}, headers=forwarded
        )

    return {entry["event"]: entry for entry in logs if entry.get("security")}
