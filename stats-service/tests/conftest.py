"""stats-service fixtures: the app on a real Redis (own key prefix per test), task-service
faked with respx, and access tokens signed like user-service signs them."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from redis.asyncio import Redis
from stats_service import main as stats_main
from stats_service.config import Settings
from stats_service.main import create_app
from taskflow_kit.redis_client import create_redis
from taskflow_kit.testing import mark_revocations_complete, serving, test_redis_url
from taskflow_kit.tokens import issue_token

TASK_SERVICE_URL = "http://task-service.test"
AGGREGATES_PATH = "/internal/tasks/aggregates"
SESSION_PREFIX = f"tf_stats_test_{uuid.uuid4().hex[:8]}:"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def aggregates_payload(
    *,
    todo: int = 0,
    in_progress: int = 0,
    done: int = 0,
    priorities: tuple[int, int, int, int] | None = None,
    overdue: int = 0,
    due_next_7_days: int = 0,
    completed_last_7_days: int = 0,
    activity_days: int = 1,
    activity: dict[dt.date, tuple[int, int]] | None = None,
    owners: int = 1,
    generated_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """A task-service aggregate answer; activity zero-filled unless rows are given."""
    now = generated_at or dt.datetime.now(dt.UTC)
    total = todo + in_progress + done
    low, medium, high, urgent = priorities or (0, total, 0, 0)
    today = now.astimezone(dt.UTC).date()
    if activity is None:
        days = [today - dt.timedelta(days=n) for n in range(activity_days - 1, -1, -1)]
        activity = dict.fromkeys(days, (0, 0))
    return {
        "total": total,
        "by_status": {"todo": todo, "in_progress": in_progress, "done": done},
        "by_priority": {"low": low, "medium": medium, "high": high, "urgent": urgent},
        "overdue": overdue,
        "due_next_7_days": due_next_7_days,
        "completed_last_7_days": completed_last_7_days,
        "activity": [
            {"date": day.isoformat(), "created": created, "completed": completed}
            for day, (created, completed) in activity.items()
        ],
        "owners": owners,
        "generated_at": now.isoformat(),
    }


@pytest.fixture
def redis_prefix() -> str:
    return f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def settings(redis_prefix: str) -> Settings:
    return Settings(
        environment="test",
        redis_url=test_redis_url(),
        redis_prefix=redis_prefix,
        task_service_url=TASK_SERVICE_URL,
        task_service_timeout_seconds=1.0,
        stats_cache_ttl_seconds=30,
        log_json=False,
        log_level="WARNING",
    )


@pytest.fixture
async def redis(redis_prefix: str) -> AsyncIterator[Redis]:
    """A Redis client; this test's keys are deleted afterwards (any test using `settings`
    against the real Redis must request it)."""
    client = create_redis(test_redis_url())
    # No user-service here: its relay's epoch key is set as it would set it, so the (empty)
    # revocation map counts as complete (see `taskflow_kit.testing.mark_revocations_complete`).
    await mark_revocations_complete(test_redis_url(), redis_prefix)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(autouse=True)
def httpx_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """respx fakes httpx's own transport: the apps built here get that one instead of the
    aiohttp transport of production (tests/stats/test_upstream.py runs that one for real)."""
    monkeypatch.setattr(stats_main, "pooled_transport", lambda: None)


@pytest.fixture
def task_service() -> Iterator[respx.MockRouter]:
    """task-service faked at the HTTP level (only task-service: Redis stays real)."""
    with respx.mock(base_url=TASK_SERVICE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(create_app(settings)) as http:
        yield http


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on `app` with its lifespan running (ASGITransport does not run it)."""
    async with (
        serving(app) as served,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served), base_url="http://test"
        ) as http,
    ):
        yield http


@pytest.fixture
def start_app() -> Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]:
    return app_client


@pytest.fixture
def payload() -> Callable[..., dict[str, Any]]:
    return aggregates_payload


@pytest.fixture
def token(settings: Settings) -> Callable[..., str]:
    def make(user_id: int, *, is_superuser: bool = False) -> str:
        return issue_token(
            settings.token_config(),
            subject=str(user_id),
            token_type="access",
            ttl=dt.timedelta(minutes=5),
            claims={"username": f"user{user_id}", "is_superuser": is_superuser},
        )

    return make


@pytest.fixture
def auth(token: Callable[..., str]) -> Callable[..., dict[str, str]]:
    """Authorization headers for user `user_id`."""

    def make(user_id: int, *, is_superuser: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(user_id, is_superuser=is_superuser)}"}

    return make
