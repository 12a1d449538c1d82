"""Liveness (`/health`) and readiness (`/ready`: every dependency answers) endpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from taskflow_kit.redis_client import ping_redis
from taskflow_kit.resources import Check, ServiceResources, resources


async def run_check(check: Check, *, limit_seconds: float = 2.0) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), limit_seconds)
    except Exception as exc:  # a failing dependency is a result here, not an error
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def health_router(checks: Mapping[str, Check] | None = None) -> APIRouter:
    """`/health` answers while the process runs; `/ready` is 503 unless every check passes.

    Without `checks`, `/ready` checks what the service's state holds (`state_checks`)."""
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process is up."""
        return {"status": "ok"}

    @router.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        """Readiness: the database and Redis (where used) answer."""
        current = checks if checks is not None else state_checks(resources(request))
        names = list(current)
        results = await asyncio.gather(*(run_check(current[name]) for name in names))
        report = dict(zip(names, results, strict=True))
        ok = all(result["status"] == "up" for result in results)
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": report},
            status_code=200 if ok else 503,
        )

    return router


def state_checks(state: ServiceResources) -> dict[str, Check]:
    """Readiness checks of what `state` holds: the database if it has an engine, Redis if it
    has a client, then the service's own `checks`."""
    found: dict[str, Check] = {}
    if state.engine is not None:
        engine = state.engine

        async def database() -> None:
            from taskflow_kit.db import ping_database  # the [db] extra: only with an engine

            await ping_database(engine)

        found["database"] = database
    if state.redis is not None:
        redis = state.redis

        async def redis_check() -> None:
            await ping_redis(redis)

        found["redis"] = redis_check
    return {**found, **state.checks}
