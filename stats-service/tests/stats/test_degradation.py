"""Redis or task-service failing for real: answers degrade, never to a 500 or to zeros."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from redis.asyncio import Redis
from stats_service.config import Settings
from stats_service.main import create_app
from stats_service.stats.schemas import TaskAggregates
from stats_service.stats.service import user_stats

AGGREGATES = "/internal/tasks/aggregates"
StartApp = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]
Payload = Callable[..., dict[str, Any]]
Auth = Callable[..., dict[str, str]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers: a hung dependency."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_redis_down_still_answers_from_task_service(
    settings: Settings,
    redis: Redis,
    start_app: StartApp,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
) -> None:
    route = task_service.get(AGGREGATES).respond(json=payload(todo=2, done=2))
    app = create_app(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    )

    async with start_app(app) as client:
        first = await client.get("/api/v1/stats/", headers=auth(1))
        second = await client.get("/api/v1/stats/", headers=auth(1))
        ready = await client.get("/ready")

    assert first.status_code == second.status_code == 200
    assert first.json()["completed_percentage"] == 50.0
    assert "Warning" not in first.headers
    assert route.call_count == 2  # nothing could be cached
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["status"] == "down"


async def test_redis_and_task_service_down_is_503_not_500(
    settings: Settings, redis: Redis, start_app: StartApp, auth: Auth
) -> None:
    app = create_app(
        settings.model_copy(
            update={
                "redis_url": f"redis://127.0.0.1:{closed_port()}/0",
                "task_service_url": f"http://127.0.0.1:{closed_port()}",
            }
        )
    )

    async with start_app(app) as client:
        response = await client.get("/api/v1/stats/", headers=auth(1))

    assert response.status_code == 503
    assert "Retry-After" in response.headers


async def test_a_hung_task_service_times_out_to_the_last_known_value(
    settings: Settings,
    redis: Redis,
    start_app: StartApp,
    silent_port: int,
    auth: Auth,
    payload: Payload,
) -> None:
    app = create_app(
        settings.model_copy(
            update={
                "task_service_url": f"http://127.0.0.1:{silent_port}",
                "task_service_timeout_seconds": 0.3,
                # Redis is healthy here: a generous bound keeps a stall of this busy test
                # process from reading as a Redis failure (it did once in CI, at 1 s).
                "redis_timeout_seconds": 5.0,
            }
        )
    )
    headers = auth(9)
    async with start_app(app) as client:
        started = time.perf_counter()
        unknown = await client.get("/api/v1/stats/", headers=headers)
        waited = time.perf_counter() - started
        # Seed the last known value as an earlier successful read would have.
        service = app.state.stats_service
        assert service.cache.redis.connection_pool.connection_kwargs["socket_timeout"] == 5.0
        known = user_stats(TaskAggregates.model_validate(payload(todo=1, done=3)))
        await service.cache.store(
            "user:9:summary", known.model_dump(mode="json"), now=service.clock()
        )
        await service.cache.redis.delete(service.cache.fresh_key("user:9:summary"))
        stale = await client.get("/api/v1/stats/", headers=headers)

    assert unknown.status_code == 503
    assert waited < 3  # bounded by the timeout, not by task-service
    assert stale.status_code == 200
    assert stale.json()["stale"] is True
    assert stale.json()["completed_tasks"] == 3


async def test_a_hung_redis_costs_one_timeout_then_is_skipped(
    settings: Settings,
    start_app: StartApp,
    silent_port: int,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
) -> None:
    route = task_service.get(AGGREGATES).respond(json=payload(todo=1))
    app = create_app(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{silent_port}/0"})
    )
    headers = auth(1)

    async with start_app(app) as client:
        started = time.perf_counter()
        first = await client.get("/api/v1/stats/", headers=headers)
        first_took = time.perf_counter() - started
        started = time.perf_counter()
        second = await client.get("/api/v1/stats/", headers=headers)
        second_took = time.perf_counter() - started

    assert first.status_code == second.status_code == 200
    assert route.call_count == 2
    assert first_took >= 0.9  # the Redis client's 1 s socket timeout, once
    assert second_took < 0.5  # Redis skipped while its breaker is open
