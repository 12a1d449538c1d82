"""stats-service against the real task-service: its app in-process on its own migrated
database, reached through stats-service's ResilientClient via `httpx.ASGITransport`."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from stats_service.config import Settings
from stats_service.main import create_app
from task_service.config import Settings as TaskSettings
from task_service.database import Base
from task_service.main import ALEMBIC_INI as TASK_ALEMBIC_INI
from task_service.main import create_app as create_task_app
from taskflow_kit.db import create_engine
from taskflow_kit.redis_client import create_redis
from taskflow_kit.testing import (
    WithState,
    empty_tables,
    mark_revocations_complete,
    migrated_database,
    serving,
    test_redis_url,
)
from taskflow_kit.tokens import issue_token

# Far from UTC on purpose: UTC calendar days must not depend on the database session's zone.
DATABASE_TIME_ZONE = "Pacific/Kiritimati"  # UTC+14


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class SwitchableTransport(httpx.AsyncBaseTransport):
    """task-service in-process; `up = False` makes it unreachable, like a stopped process."""

    def __init__(self, app: WithState) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.up = True
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("task-service is stopped", request=request)
        self.calls += 1
        return await self.inner.handle_async_request(request)


@pytest.fixture(scope="session")
async def task_database_url() -> AsyncIterator[str]:
    async with migrated_database("tf_stats_tasks", TASK_ALEMBIC_INI) as url:
        name = make_url(url).database
        engine = create_engine(url, pool_size=1, max_overflow=0)
        async with engine.begin() as connection:
            await connection.execute(
                text(f"ALTER DATABASE \"{name}\" SET timezone TO '{DATABASE_TIME_ZONE}'")
            )
        await engine.dispose()
        yield url


@pytest.fixture(scope="session")
def shared_settings() -> dict[str, Any]:
    return {
        "environment": "test",
        "redis_url": test_redis_url(),
        "log_json": False,
        "log_level": "WARNING",
    }


@pytest.fixture(scope="session")
async def task_app(
    task_database_url: str, shared_settings: dict[str, Any]
) -> AsyncIterator[WithState]:
    """task-service in process, its lifespan running (an ASGI app whose requests carry its
    state; `.app` is the FastAPI app)."""
    settings = TaskSettings(
        **shared_settings,
        database_url=task_database_url,
        redis_prefix=f"tf_stats_it_tasks_{uuid.uuid4().hex[:8]}:",
        user_service_url=f"http://127.0.0.1:{closed_port()}",
        migrate_on_start=False,
    )
    await mark_revocations_complete(settings.redis_url, settings.redis_prefix)
    async with serving(create_task_app(settings)) as served:
        yield served
    redis = create_redis(settings.redis_url)  # task-service's keys go with the session
    try:
        await clear_prefix(redis, settings.redis_prefix)
    finally:
        await redis.aclose()


@pytest.fixture
async def task_engine(task_app: WithState) -> AsyncIterator[AsyncEngine]:
    """task-service's own engine (tests write rows with chosen timestamps); emptied after."""
    engine: AsyncEngine = task_app.app.state.engine
    yield engine
    await empty_tables(engine, Base.metadata)


@pytest.fixture
def stats_settings(shared_settings: dict[str, Any]) -> Settings:
    return Settings(
        **shared_settings,
        redis_prefix=f"tf_stats_it_{uuid.uuid4().hex[:8]}:",
        task_service_url="http://task-service.in-process",
    )


@pytest.fixture
async def stats_redis(stats_settings: Settings) -> AsyncIterator[Redis]:
    redis = create_redis(stats_settings.redis_url)
    yield redis
    await clear_prefix(redis, stats_settings.redis_prefix)
    await redis.aclose()


async def clear_prefix(redis: Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
def task_transport(task_app: WithState) -> SwitchableTransport:
    return SwitchableTransport(task_app)


@pytest.fixture
async def stats_client(
    stats_settings: Settings, task_transport: SwitchableTransport, stats_redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    # No user-service here: see `mark_revocations_complete`.
    await mark_revocations_complete(stats_settings.redis_url, stats_settings.redis_prefix)
    app = create_app(stats_settings, task_service_transport=task_transport)
    async with serve(app) as client:
        yield client


@pytest.fixture
async def task_client(task_app: WithState) -> AsyncIterator[httpx.AsyncClient]:
    """task-service's public API (its lifespan already runs in `task_app`)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=task_app), base_url="http://task-service.test"
    ) as client:
        yield client


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(app) as served,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served), base_url="http://test"
        ) as http,
    ):
        yield http


@pytest.fixture
def auth(stats_settings: Settings) -> Callable[..., dict[str, str]]:
    """Authorization headers for a user, signed with the secret both services share."""

    def make(user_id: int, *, is_superuser: bool = False) -> dict[str, str]:
        token = issue_token(
            stats_settings.token_config(),
            subject=str(user_id),
            token_type="access",
            ttl=dt.timedelta(minutes=10),
            claims={"username": f"user{user_id}", "is_superuser": is_superuser},
        )
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def clear_stats_cache(stats_redis: Redis, stats_settings: Settings) -> Callable[[], Any]:
    """Forget every cached statistic of this test (between Hypothesis examples)."""

    async def clear() -> None:
        await clear_prefix(stats_redis, stats_settings.redis_prefix)

    return clear


@pytest.fixture
def expire_fresh_cache(stats_redis: Redis, stats_settings: Settings) -> Callable[[], Any]:
    """Do what the short TTL does, now: drop the fresh copies, keep the last known good ones."""

    async def expire() -> None:
        await clear_prefix(stats_redis, f"{stats_settings.redis_prefix}stats:v1:fresh:")

    return expire
