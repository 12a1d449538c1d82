"""Liveness (`/health`) and readiness (`/ready`: every dependency answers) endpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from taskflow_kit.db import ping_database
from taskflow_kit.redis_client import ping_redis
from taskflow_kit.resources import resources

Check = Callable[[], Awaitable[object]]


async def run_check(check: Check, *, limit_seconds: float = 2.0) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), limit_seconds)
    except Exception as exc:  # a failing dependency is a result here, not an error
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def health_router(checks: Mapping[str, Check]) -> APIRouter:
    """`/health` answers while the process runs; `/ready` is 503 unless every check passes."""
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process is up."""
        return {"status": "ok"}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        """Readiness: the database and Redis (where used) answer."""
        names = list(checks)
        results = await asyncio.gather(*(run_check(checks[name]) for name in names))
        report = dict(zip(names, results, strict=True))
        ok = all(result["status"] == "up" for result in results)
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": report},
            status_code=200 if ok else 503,
        )

    return router


def database_and_redis_checks(app: FastAPI) -> dict[str, Check]:
    """Readiness checks of the engine and Redis client the service attached
    (`taskflow_kit.resources`; looked up when a check runs, so the lifespan may attach them)."""

    async def database() -> None:
        await ping_database(resources(app).need_engine())

    async def redis() -> None:
        await ping_redis(resources(app).need_redis())

    return {"database": database, "redis": redis}
