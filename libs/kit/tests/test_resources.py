"""The kit reads a service's resources through one typed record; a missing one is named."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from taskflow_kit.db import SessionDep
from taskflow_kit.health import database_and_redis_checks, health_router
from taskflow_kit.resources import (
    MissingResource,
    ServiceResources,
    attach_resources,
    resources,
)


def test_an_app_without_resources_says_how_to_attach_them() -> None:
    with pytest.raises(MissingResource, match="attach_resources"):
        resources(FastAPI())


def test_each_missing_field_is_named(redis: Redis) -> None:
    attached = ServiceResources(redis=redis)
    assert attached.need_redis() is redis
    with pytest.raises(MissingResource, match="no engine"):
        attached.need_engine()
    with pytest.raises(MissingResource, match="no sessionmaker"):
        attached.need_sessionmaker()


def test_attach_then_read_from_the_app_and_keep_the_state_aliases(redis: Redis) -> None:
    app = FastAPI()
    attached = ServiceResources(redis=redis)
    attach_resources(app, attached)
    assert resources(app) is attached
    assert app.state.redis is redis
    assert app.state.engine is None


async def test_a_session_without_a_sessionmaker_fails_naming_it() -> None:
    app = FastAPI()
    attach_resources(app, ServiceResources())

    @app.get("/items")
    async def items(session: SessionDep) -> int:
        return int((await session.execute(text("SELECT 1"))).scalar_one())

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(MissingResource, match="sessionmaker"):
            await client.get("/items")


async def test_readiness_reports_a_resource_the_service_has_not_as_down(redis: Redis) -> None:
    app = FastAPI()
    attach_resources(app, ServiceResources(redis=redis))  # no database, as in stats-service
    app.include_router(health_router(database_and_redis_checks(app)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == {"status": "down", "error": "MissingResource"}
    assert checks["redis"]["status"] == "up"
