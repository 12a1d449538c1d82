"""Gateway fixtures: real uvicorn servers on free loopback ports, in this event loop — small
stand-in backends behind a real gateway — and a Redis key prefix of this session's own."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_gateway.config import Settings
from api_gateway.main import create_app
from fastapi import FastAPI
from taskflow_kit.redis_client import create_redis
from taskflow_kit.testing import test_redis_url
from taskflow_kit.tokens import TokenConfig, issue_token

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_doubles import Backend, RunningServer, start_server

SESSION_PREFIX = f"tf_gateway_test_{uuid.uuid4().hex[:8]}:"
JWT_SECRET = "gateway-test-secret-0123456789abcdef-xyz"
TOKEN_CONFIG = TokenConfig(secret=JWT_SECRET, issuer="taskflow", audience="taskflow")


def access_token(user_id: int = 1, *, ttl: timedelta = timedelta(minutes=5), **claims: Any) -> str:
    return issue_token(
        TOKEN_CONFIG, subject=str(user_id), token_type="access", ttl=ttl, claims=claims
    )


@pytest.fixture(scope="session", autouse=True)
async def _clean_redis() -> AsyncIterator[None]:
    yield
    redis = create_redis(test_redis_url())
    try:
        keys = [key async for key in redis.scan_iter(match=f"{SESSION_PREFIX}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def gateway_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "jwt_secret": JWT_SECRET,
        "redis_url": test_redis_url(),
        "redis_prefix": f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}:",
        "log_json": False,
        "log_level": "WARNING",
        "health_interval_seconds": 0.2,
        "openapi_refresh_seconds": 0.3,
        "connect_timeout": 0.5,
        "read_timeout": 2.0,
        "deadline": 3.0,
        "retry_backoff_seconds": 0.001,
        "cors_origins": "http://localhost:3000",
        # The tests read the status detail from loopback; the access tests turn this off.
        "trust_loopback": True,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningGateway:
    url: str
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway


GatewayFactory = Callable[..., AbstractAsyncContextManager[RunningGateway]]
BackendStarter = Callable[..., Awaitable[tuple[Backend, RunningServer]]]


@pytest.fixture
def make_gateway() -> GatewayFactory:
    """`async with make_gateway(task=[url, ...], **settings) as gw:` — a real gateway server."""

    @asynccontextmanager
    async def factory(
        *,
        users: list[str] | None = None,
        tasks: list[str] | None = None,
        stats: list[str] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[RunningGateway]:
        closed = "http://127.0.0.1:9"  # discard port: nothing listens
        settings = gateway_settings(
            user_service_urls=",".join(users or [closed]),
            task_service_urls=",".join(tasks or [closed]),
            stats_service_urls=",".join(stats or [closed]),
            **overrides,
        )
        app = create_app(settings)
        server = await start_server(app, lifespan="on")
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                yield RunningGateway(server.url, app, client)
        finally:
            await server.stop()

    return factory


@pytest.fixture
async def start_backend() -> AsyncIterator[BackendStarter]:
    """`backend, server = await start_backend("a")`: a stand-in service, stopped at teardown."""
    async with AsyncExitStack() as stack:

        async def start(name: str = "backend", **options: Any) -> tuple[Backend, RunningServer]:
            backend = Backend(name, **options)
            server = await start_server(backend.app())
            stack.push_async_callback(server.stop)
            return backend, server

        yield start
