"""Operational surface: health, readiness, metrics, request ids, the schema and migrations."""

from __future__ import annotations

import socket

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from user_service.main import create_app
from user_service.models import Base


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert {name: check["status"] for name, check in ready.json()["checks"].items()} == {
        "database": "up",
        "redis": "up",
    }


async def test_ready_is_503_without_redis(make_api) -> None:
    async with make_api(redis_url=f"redis://127.0.0.1:{closed_port()}/0") as api:
        ready = await api.client.get("/ready")
        health = await api.client.get("/health")

    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["status"] == "down"
    assert health.status_code == 200


async def test_the_service_starts_while_the_database_is_down_and_answers_503(settings) -> None:
    """Nothing at start needs the database: the pool opens its connections on demand, so the
    service comes up, says it is not ready, and answers a request that needs the database
    with 503 + Retry-After (the client retries) rather than failing to start."""
    from taskflow_kit.testing import serving

    dead = f"postgresql://postgres@127.0.0.1:{closed_port()}/taskflow_users"
    app = create_app(settings.model_copy(update={"database_url": dead}))
    async with serving(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            health = await client.get("/health")
            ready = await client.get("/ready")
            login = await client.post(
                "/api/v1/auth/login", json={"username": "alice", "password": "a password!"}
            )

    assert health.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["status"] == "down"
    assert login.status_code == 503, login.text
    assert "retry-after" in login.headers
    assert login.headers["content-type"] == "application/problem+json"


async def test_metrics_use_route_templates(client: httpx.AsyncClient, api) -> None:
    alice = await api.account(username="alice")
    await client.get(f"/api/v1/users/{alice.id}", headers=alice.headers)

    text = (await client.get("/metrics")).text

    assert 'route="/api/v1/users/{user_id:number}"' in text
    assert f'route="/api/v1/users/{alice.id}"' not in text


async def test_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"


async def test_schema_lists_both_spellings(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/auth/register",
        "/api/v1/users/",
        "/api/v1/auth/login",
        "/api/v1/users/login",
        "/api/v1/auth/me",
        "/api/v1/users/me",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/me/password",
        "/api/v1/users/{user_id}",
    ):
        assert path in paths
    assert "hashed_password" not in str(paths)


async def test_migrations_match_the_models(app: FastAPI) -> None:
    async with app.state.engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == []


async def test_migrate_on_start_creates_and_migrates_the_database(settings) -> None:
    from sqlalchemy.engine import make_url
    from taskflow_kit.migrations import drop_database
    from taskflow_kit.testing import serving, unique_name

    url = make_url(settings.database_url).set(database=unique_name("tf_users_start"))
    fresh_url = url.render_as_string(hide_password=False)
    app = create_app(
        settings.model_copy(update={"database_url": fresh_url, "migrate_on_start": True})
    )
    try:
        async with serving(app) as served:
            transport = httpx.ASGITransport(app=served)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                ready = await client.get("/ready")
                created = await client.post(
                    "/api/v1/users/",
                    json={
                        "email": "m@example.com",
                        "username": "migrated",
                        "password": "pw-pw-pw-pw",
                    },
                )
    finally:
        await drop_database(fresh_url)

    assert ready.status_code == 200
    assert created.status_code == 201


@pytest.mark.parametrize("number", ["0", "-1", "9223372036854775808", "99999999999999999999"])
async def test_out_of_range_numbers_are_422_not_500(
    client: httpx.AsyncClient, api, number: str
) -> None:
    alice = await api.account(username="alice", admin=True)
    by_id = await client.get(f"/api/v1/users/{number}", headers=alice.headers)
    admin_patch = await client.patch(f"/api/v1/users/{number}", json={}, headers=alice.headers)
    skip = await client.get("/api/v1/users/", params={"skip": number}, headers=alice.headers)

    assert by_id.status_code == 422
    assert admin_patch.status_code == 422
    assert skip.status_code == (200 if number == "0" else 422)


async def test_a_token_with_an_impossible_user_id_is_401(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    from datetime import timedelta

    from taskflow_kit.tokens import issue_token

    token = issue_token(
        app.state.token_issuer.config,
        subject=str(2**70),
        token_type="access",
        ttl=timedelta(minutes=5),
    )
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_service_code_reads_its_typed_state_never_app_state() -> None:
    import user_service
    from taskflow_kit.testing import modules_reading_app_state

    assert modules_reading_app_state(user_service) == []
