"""stats-service application: `uvicorn stats_service.main:create_app --factory --port 8003`."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
from fastapi import FastAPI
from taskflow_kit.app import create_service_app
from taskflow_kit.consumer import RedisDedupe, consumer_for, deduplicated
from taskflow_kit.events import TASK_STREAM, stream_key
from taskflow_kit.health import health_router
from taskflow_kit.redis_client import open_redis
from taskflow_kit.resilience import ResilientClient
from taskflow_kit.resources import Started, service_lifespan
from taskflow_kit.revocation import RevocationList, RevocationListener

from stats_service import __version__
from stats_service.config import Settings
from stats_service.events import CONSUMER_GROUP, TaskEventHandler
from stats_service.state import State
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
    settings.configure_observability(SERVICE)

    revocations = RevocationList()

    async def start(stack: AsyncExitStack) -> Started[State]:
        redis, stream_redis = open_redis(
            stack, settings.redis_url, timeout=settings.redis_timeout_seconds
        )
        client = ResilientClient(
            name="task-service",
            base_url=settings.task_service_url,
            read_timeout=settings.task_service_timeout_seconds,
            transport=task_service_transport or pooled_transport(),
        )
        stack.push_async_callback(client.aclose)
        upstream = TaskAggregatesClient(client)
        cache = StatsCache(
            redis,
            prefix=settings.redis_prefix,
            ttl=settings.stats_cache_ttl_seconds,
            last_good_ttl=settings.stats_last_good_ttl_seconds,
            events_stream=stream_key(settings.redis_prefix, TASK_STREAM),
            events_group=CONSUMER_GROUP,
        )
        dedupe = RedisDedupe(redis, prefix=f"{settings.redis_prefix}events:seen:{CONSUMER_GROUP}:")
        consumer = consumer_for(
            stream_redis,
            stream=TASK_STREAM,
            group=CONSUMER_GROUP,
            handler=deduplicated(TaskEventHandler(cache), dedupe),
            **settings.consumer_options(),
        )
        listener = RevocationListener(
            stream_redis, key_prefix=settings.redis_prefix, revocations=revocations
        )
        state = State(
            redis=redis,
            # Redis is checked by the state's own client; task-service through the upstream.
            checks={"task_service": upstream.check},
            settings=settings,
            stats_service=StatsService(upstream, cache),
            consumer=consumer,
        )
        await listener.start()
        return Started(state, jobs=(consumer.run(), listener.run()))

    app = create_service_app(
        service=SERVICE,
        title="TaskFlow stats-service",
        version=__version__,
        description="Task statistics computed by task-service's database, cached in Redis.",
        token_config=settings.token_config(),
        revocations=revocations,
        lifespan=service_lifespan(start),
    )
    app.include_router(stats_router)
    app.include_router(health_router())
    return app
