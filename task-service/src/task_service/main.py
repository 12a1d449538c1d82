"""task-service application factory: `uvicorn task_service.main:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from taskflow_kit.app import create_service_app
from taskflow_kit.db import create_engine, create_sessionmaker
from taskflow_kit.health import database_and_redis_checks, health_router
from taskflow_kit.logs import configure_logging
from taskflow_kit.migrations import prepare_database
from taskflow_kit.redis_client import create_redis
from taskflow_kit.resilience import CircuitBreaker, ResilientClient

from task_service.aggregates.router import router as aggregates_router
from task_service.config import SERVICE_NAME, Settings
from task_service.tasks.router import router as tasks_router
from task_service.user_directory import UserDirectory

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the lifespan migrates (if asked), then opens the database, Redis and the
    user-service client."""
    settings = settings or Settings()
    configure_logging(service=SERVICE_NAME, level=settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await prepare_database(ALEMBIC_INI, settings.database_url)
        engine = create_engine(settings.database_url)
        redis = create_redis(settings.redis_url)
        user_client = ResilientClient(
            name="user-service",
            base_url=settings.user_service_url,
            connect_timeout=settings.user_service_connect_timeout,
            read_timeout=settings.user_service_read_timeout,
            breaker=CircuitBreaker(failure_threshold=5, reset_timeout=10.0),
        )
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.redis = redis
        app.state.user_directory = UserDirectory(
            client=user_client,
            redis=redis,
            key_prefix=settings.redis_prefix,
            cache_ttl_seconds=settings.user_cache_ttl_seconds,
        )
        try:
            yield
        finally:
            await user_client.aclose()
            await redis.aclose()
            await engine.dispose()

    app = create_service_app(
        service=SERVICE_NAME,
        title="TaskFlow task-service",
        version=VERSION,
        description="Tasks, assignment, dependencies, filtering and task aggregates.",
        token_config=settings.token_config(),
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.settings = settings

    app.include_router(health_router(database_and_redis_checks(app)))
    app.include_router(tasks_router)
    app.include_router(aggregates_router)
    return app
