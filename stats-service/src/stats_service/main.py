"""stats-service application: `uvicorn stats_service.main:create_app --factory --port 8003`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from taskflow_kit.app import create_service_app
from taskflow_kit.background import running
from taskflow_kit.consumer import RedisDedupe, consumer_for, deduplicated
from taskflow_kit.events import TASK_STREAM, stream_key
from taskflow_kit.health import health_router
from taskflow_kit.logs import configure_logging
from taskflow_kit.redis_client import create_redis, create_stream_redis
from taskflow_kit.resilience import ResilientClient
from taskflow_kit.resources import ServiceResources, attach_resources
from taskflow_kit.revocation import RevocationList, RevocationListener

from stats_service import __version__
from stats_service.config import Settings
from stats_service.events import CONSUMER_GROUP, TaskEventHandler
from stats_service.stats.cache import StatsCache
from stats_service.stats.router import router as stats_router
from stats_service.stats.service import StatsService
from stats_service.stats.upstream import TaskAggregatesClient, pooled_transport

SERVICE = "stats-service"


def create_app(
    settings: Settings | None = None,
    *,
    task_service_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app; `task_service_transport` lets tests route task-service calls in-process."""
    settings = settings or Settings()
    configure_logging(service=SERVICE, level=settings.log_level, json=settings.log_json)

    revocations = RevocationList()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings.redis_url)
        stream_redis = create_stream_redis(settings.redis_url)
        task_stream = stream_key(settings.redis_prefix, TASK_STREAM)
        client = ResilientClient(
            name="task-service",
            base_url=settings.task_service_url,
            read_timeout=settings.task_service_timeout_seconds,
            transport=task_service_transport or pooled_transport(),
        )
        upstream = TaskAggregatesClient(client)
        cache = StatsCache(
            redis,
            prefix=settings.redis_prefix,
            ttl=settings.stats_cache_ttl_seconds,
            last_good_ttl=settings.stats_last_good_ttl_seconds,
            events_stream=task_stream,
            events_group=CONSUMER_GROUP,
        )
        attach_resources(app, ServiceResources(redis=redis))
        app.state.stats_service = StatsService(upstream, cache)
        dedupe = RedisDedupe(redis, prefix=f"{settings.redis_prefix}events:seen:{CONSUMER_GROUP}:")
        consumer = consumer_for(
            settings,
            stream_redis,
            stream=TASK_STREAM,
            group=CONSUMER_GROUP,
            handler=deduplicated(TaskEventHandler(cache), dedupe),
        )
        app.state.consumer = consumer
        listener = RevocationListener(
            stream_redis, key_prefix=settings.redis_prefix, revocations=revocations
        )
        await listener.start()
        try:
            async with running(consumer.run(), listener.run()):
                yield
        finally:
            await client.aclose()
            await stream_redis.aclose()
            await redis.aclose()

    app = create_service_app(
        service=SERVICE,
        title="TaskFlow stats-service",
        version=__version__,
        description="Task statistics computed by task-service's database, cached in Redis.",
        token_config=settings.token_config(),
        revocations=revocations,
        lifespan=lifespan,
    )
    app.include_router(stats_router)

    async def redis_ready() -> None:
        await app.state.stats_service.cache.ping()

    async def task_service_ready() -> None:
        await app.state.stats_service.upstream.check()

    app.include_router(health_router({"redis": redis_ready, "task_service": task_service_ready}))
    return app
