"""task-service application factory: `uvicorn task_service.main:create_app --factory`."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from fastapi import FastAPI
from taskflow_kit.app import create_service_app
from taskflow_kit.background import every
from taskflow_kit.consumer import consumer_for
from taskflow_kit.db import create_engine, create_pool, create_sessionmaker
from taskflow_kit.events import USER_STREAM
from taskflow_kit.health import health_router
from taskflow_kit.migrations import prepare_database
from taskflow_kit.outbox import OutboxRelay
from taskflow_kit.redis_client import open_redis
from taskflow_kit.resilience import CircuitBreaker, ResilientClient
from taskflow_kit.resources import Started, service_lifespan
from taskflow_kit.revocation import RevocationList, RevocationListener

from task_service.aggregates.router import compat_router as task_stats_router
from task_service.aggregates.router import router as aggregates_router
from task_service.config import SERVICE_NAME, Settings
from task_service.events import CONSUMER_GROUP, UserEventHandler
from task_service.projects.router import router as projects_router
from task_service.state import State
from task_service.tasks.events import OUTBOX, PRODUCER, make_outbox
from task_service.tasks.router import router as tasks_router

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the lifespan migrates (if asked), then opens the database, Redis and the
    user-service client."""
    settings = settings or Settings()
    settings.configure_observability(SERVICE_NAME)

    revocations = RevocationList()

    async def start(stack: AsyncExitStack) -> Started[State]:
        if settings.migrate_on_start:
            await prepare_database(ALEMBIC_INI, settings.database_url)
        # The SQLAlchemy engine serves the cold paths (aggregates, the event consumer, the
        # relay, readiness); the request paths run on the asyncpg pool.
        engine = create_engine(
            settings.database_url,
            pool_size=5,
            max_overflow=5,
            idle_in_transaction_timeout=settings.db_idle_in_transaction_seconds,
        )
        stack.push_async_callback(engine.dispose)
        pool = await create_pool(
            settings.database_url,
            idle_in_transaction_timeout=settings.db_idle_in_transaction_seconds,
        )
        stack.push_async_callback(pool.close)
        redis, stream_redis = open_redis(
            stack, settings.redis_url, timeout=settings.redis_timeout_seconds
        )
        user_client = ResilientClient(
            name="user-service",
            base_url=settings.user_service_url,
            connect_timeout=settings.user_service_connect_timeout,
            read_timeout=settings.user_service_read_timeout,
            breaker=CircuitBreaker(failure_threshold=5, reset_timeout=10.0),
        )
        stack.push_async_callback(user_client.aclose)
        sessionmaker = create_sessionmaker(engine)
        relay = OutboxRelay(
            engine=engine,
            database_url=settings.database_url,
            table=OUTBOX,
            redis=redis,
            producer=PRODUCER,
            **settings.relay_options(),
        )
        outbox = make_outbox()
        handler = UserEventHandler(sessionmaker, outbox=outbox, user_client=user_client)
        consumer = consumer_for(
            stream_redis,
            stream=USER_STREAM,
            group=CONSUMER_GROUP,
            handler=handler,
            **settings.consumer_options(),
        )
        listener = RevocationListener(
            stream_redis, key_prefix=settings.redis_prefix, revocations=revocations
        )
        state = State(
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            pool=pool,
            settings=settings,
            user_client=user_client,
            outbox=outbox,
            relay=relay,
            consumer=consumer,
        )
        await listener.start()
        jobs = (
            relay.run(),
            consumer.run(),
            listener.run(),
            every(3600, handler.prune, name="prune_processed_events"),
        )
        return Started(state, jobs=jobs)

    app = create_service_app(
        service=SERVICE_NAME,
        title="TaskFlow task-service",
        version=VERSION,
        description=(
            "Tasks, projects (shared boards and their members), assignment, dependencies, "
            "filtering and task aggregates."
        ),
        token_config=settings.token_config(),
        revocations=revocations,
        lifespan=service_lifespan(start),
        redirect_slashes=False,
    )
    app.include_router(health_router())
    app.include_router(task_stats_router)  # before /tasks/{id}: "stats" is not a task id
    app.include_router(tasks_router)
    app.include_router(projects_router)
    app.include_router(aggregates_router)
    return app
