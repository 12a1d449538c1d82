"""The request session commits on success and rolls back on error (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from taskflow_kit.db import SessionDep, async_database_url, create_engine, create_sessionmaker
from taskflow_kit.errors import Conflict, install_error_handlers
from taskflow_kit.migrations import drop_database, ensure_database
from taskflow_kit.testing import test_database_server_url, unique_name


def test_async_url_selects_asyncpg() -> None:
    assert async_database_url("postgres://u@h/db").startswith("postgresql+asyncpg://")
    assert async_database_url("postgresql://u:p@h:5/db") == "postgresql+asyncpg://u:p@h:5/db"


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    url = (
        make_url(test_database_server_url())
        .set(database=unique_name("tf_kit"))
        .render_as_string(hide_password=False)
    )
    assert await ensure_database(url) is True
    assert await ensure_database(url) is False
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE item (name text PRIMARY KEY)"))
    yield engine
    await engine.dispose()
    await drop_database(url)


@pytest.fixture
def app(engine: AsyncEngine) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.sessionmaker = create_sessionmaker(engine)

    @app.post("/items/{name}", status_code=201)
    async def add(name: str, session: SessionDep) -> dict[str, str]:
        await session.execute(text("INSERT INTO item VALUES (:n)"), {"n": name})
        if name.startswith("fail"):
            raise Conflict("refused after writing")
        if name.startswith("keep"):
            raise Conflict("refused, but the write stands", commit=True)
        return {"name": name}

    return app


async def count(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT count(*) FROM item WHERE name = :n"), {"n": name}
        )
        return int(result.scalar_one())


async def test_commit_happens_before_the_response(app: FastAPI, engine: AsyncEngine) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post("/items/kept")
        assert response.status_code == 201
        # Read through another connection right after the response: the row is there.
        assert await count(engine, "kept") == 1


async def test_error_rolls_back(app: FastAPI, engine: AsyncEngine) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post("/items/fail-1")
    assert response.status_code == 409
    assert await count(engine, "fail-1") == 0


async def test_error_flagged_commit_keeps_the_write(app: FastAPI, engine: AsyncEngine) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post("/items/keep-1")
    assert response.status_code == 409
    assert response.json()["detail"] == "refused, but the write stands"
    assert await count(engine, "keep-1") == 1


async def test_unreachable_database_is_503_not_500() -> None:
    dead = create_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    app = FastAPI()
    install_error_handlers(app)
    app.state.sessionmaker = create_sessionmaker(dead)

    @app.get("/items")
    async def items(session: SessionDep) -> list[str]:
        result = await session.execute(text("SELECT name FROM item"))
        return list(result.scalars())

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/items")
    await dead.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "application/problem+json"


async def test_state_checks_report_each_dependency(engine: AsyncEngine) -> None:
    from taskflow_kit.health import database_and_redis_checks, health_router
    from taskflow_kit.redis_client import create_redis

    app = FastAPI()
    app.state.engine = engine
    app.state.redis = create_redis("redis://127.0.0.1:1/0", timeout=0.2)
    app.include_router(health_router(database_and_redis_checks(app)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.get("/ready")
    await app.state.redis.aclose()
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "up"
    assert checks["redis"]["status"] == "down"
