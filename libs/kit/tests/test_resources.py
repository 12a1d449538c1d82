"""A service's state is built once by its lifespan and reaches requests through
`request.state`; the kit reads its resources from there, and a missing one is named."""

from __future__ import annotations

import dataclasses
import types
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from redis.asyncio import Redis
from taskflow_kit.health import health_router
from taskflow_kit.resources import (
    MissingResource,
    ServiceResources,
    Started,
    service_lifespan,
    service_state,
)
from taskflow_kit.testing import modules_reading_app_state, serving, with_state


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class State(ServiceResources):
    greeting: str


async def get_state(request: Request) -> State:
    return service_state(request, State)


def test_each_missing_field_is_named(redis: Redis) -> None:
    attached = ServiceResources(redis=redis)
    assert attached.need_redis() is redis
    with pytest.raises(MissingResource, match="no engine"):
        attached.need_engine()
    with pytest.raises(MissingResource, match="no sessionmaker"):
        attached.need_sessionmaker()


async def test_the_lifespan_state_reaches_requests_typed_and_closes_in_reverse() -> None:
    closed: list[str] = []

    async def start(stack: AsyncExitStack) -> Started[State]:
        async def close(name: str) -> None:
            closed.append(name)

        stack.push_async_callback(close, "opened first")
        stack.push_async_callback(close, "opened second")
        return Started(State(greeting="hello"))

    app = FastAPI(lifespan=service_lifespan(start))

    @app.get("/greeting")
    async def greeting(state: State = Depends(get_state)) -> str:
        return state.greeting

    async with (
        serving(app) as served,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as c,
    ):
        assert (await c.get("/greeting")).json() == "hello"
        assert closed == []
    assert closed == ["opened second", "opened first"]
    assert not hasattr(app.state, "taskflow")  # nothing is looked up on app.state by name


async def test_a_failing_start_closes_what_it_opened() -> None:
    closed: list[str] = []

    async def start(stack: AsyncExitStack) -> Started[State]:
        async def close() -> None:
            closed.append("redis")

        stack.push_async_callback(close)
        raise ConnectionError("the database is not there")

    lifespan = service_lifespan(start)
    with pytest.raises(ConnectionError):
        async with lifespan(FastAPI()):
            pass
    assert closed == ["redis"]


async def test_a_request_without_state_fails_saying_how_to_give_it() -> None:
    app = FastAPI()

    @app.get("/greeting")
    async def greeting(state: State = Depends(get_state)) -> str:
        return state.greeting

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(MissingResource, match="lifespan_state"):
            await client.get("/greeting")


async def test_readiness_checks_what_the_state_holds(redis: Redis) -> None:
    app = FastAPI()

    async def upstream() -> None:
        raise ConnectionError("task-service is down")

    # No database, as in stats-service: not checked; its own check is.
    served = with_state(app, ServiceResources(redis=redis, checks={"upstream": upstream}))
    app.include_router(health_router())
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert set(checks) == {"redis", "upstream"}
    assert checks["redis"]["status"] == "up"
    assert checks["upstream"] == {"status": "down", "error": "ConnectionError"}


def test_modules_reading_app_state_are_found(tmp_path: Path) -> None:
    package = tmp_path / "some_service"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "clean.py").write_text("def f(request):\n    return request.state\n")
    (package / "dirty.py").write_text("def f(request):\n    return request.app.state.x\n")
    module = types.ModuleType("some_service")
    module.__file__ = str(package / "__init__.py")
    assert modules_reading_app_state(module) == [str(package / "dirty.py")]
