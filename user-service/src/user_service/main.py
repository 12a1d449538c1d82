"""The user-service application: `uvicorn user_service.main:create_app --factory --port 8001`."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta

import asyncpg
import structlog
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from taskflow_kit.app import create_service_app
from taskflow_kit.background import every
from taskflow_kit.db import create_engine, create_pool
from taskflow_kit.health import health_router
from taskflow_kit.migrations import prepare_database
from taskflow_kit.outbox import OutboxRelay
from taskflow_kit.ratelimit import RateLimiter
from taskflow_kit.redis_client import open_redis
from taskflow_kit.resources import Started, service_lifespan
from taskflow_kit.revocation import RevocationList, RevocationListener, RevocationStore

from user_service import __doc__ as service_doc
from user_service.auth.budgets import RouteBudgets
from user_service.auth.issuing import TokenIssuer
from user_service.auth.pruning import prune_refresh_tokens
from user_service.auth.router import router as auth_router
from user_service.auth.throttle import LoginThrottle
from user_service.config import ALEMBIC_INI, Settings
from user_service.passwords import PasswordHasher
from user_service.state import State
from user_service.users.events import OUTBOX, PRODUCER, make_outbox
from user_service.users.router import router as users_router

SERVICE = "user-service"
VERSION = "0.1.0"

logger = structlog.get_logger("user_service")


async def recover_lost_events(relay: OutboxRelay) -> None:
    """Best effort at start: with Redis or the database down, the relay's rounds do it later."""
    try:
        await relay.recover()
    except (RedisError, OSError, SQLAlchemyError) as exc:
        logger.warning("outbox_recovery_deferred", error=str(exc))


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the lifespan opens the connections and builds the `State`."""
    settings = settings or Settings()
    settings.configure_observability(SERVICE)
    revocations = RevocationList()

    async def start(stack: AsyncExitStack) -> Started[State]:
        if settings.migrate_on_start:
            await prepare_database(ALEMBIC_INI, settings.database_url)
        # The requests and the pruning run on the asyncpg pool; the SQLAlchemy engine serves
        # the cold paths only: the outbox relay and readiness.
        engine = create_engine(
            settings.database_url,
            pool_size=2,
            max_overflow=2,
            idle_in_transaction_timeout=settings.db_idle_in_transaction_seconds,
        )
        stack.push_async_callback(engine.dispose)
        pool = await create_pool(
            settings.database_url,
            min_size=settings.db_pool_size,
            max_size=settings.db_pool_size + settings.db_max_overflow,
            idle_in_transaction_timeout=settings.db_idle_in_transaction_seconds,
        )
        stack.push_async_callback(pool.close)
        redis, stream_redis = open_redis(
            stack, settings.redis_url, timeout=settings.redis_timeout_seconds
        )
        relay = OutboxRelay(
            engine=engine,
            database_url=settings.database_url,
            table=OUTBOX,
            redis=redis,
            producer=PRODUCER,
            # Revocations reach Redis atomically with their event (see taskflow_kit.revocation).
            hooks=[RevocationStore(redis, key_prefix=settings.redis_prefix).record],
            **settings.relay_options(),
        )
        listener = RevocationListener(
            stream_redis,
            key_prefix=settings.redis_prefix,
            revocations=revocations,
            prune_store=True,
        )
        state = build_state(settings, engine=engine, pool=pool, redis=redis, relay=relay)
        await state.password_hasher.warm_up()
        # A Redis that lost its data gets the retained events (and so the revocation hashes)
        # back before this process waits for them; every service's listener waits for this.
        await recover_lost_events(relay)
        await listener.start()

        async def prune() -> None:
            await prune_refresh_tokens(
                pool,
                batch=settings.refresh_token_prune_batch,
                revoked_retention=timedelta(hours=settings.revoked_refresh_token_retention_hours),
            )

        pruning = every(
            settings.refresh_token_prune_interval_seconds, prune, name="refresh_token_prune"
        )
        return Started(state, jobs=(relay.run(), listener.run(), pruning))

    app = create_service_app(
        service=SERVICE,
        title="TaskFlow user-service",
        version=VERSION,
        description=service_doc or "",
        token_config=settings.token_config(),
        revocations=revocations,
        lifespan=service_lifespan(start),
    )
    app.include_router(health_router())
    app.include_router(auth_router)
    app.include_router(users_router)
    return app


def build_state(
    settings: Settings,
    *,
    engine: AsyncEngine,
    pool: asyncpg.Pool,
    redis: Redis,
    relay: OutboxRelay,
) -> State:
    """Everything the requests use, from the connections the lifespan opened."""
    limits_prefix = f"{settings.redis_prefix}user-service:rl:"
    return State(
        engine=engine,
        pool=pool,
        redis=redis,
        settings=settings,
        outbox=make_outbox(),
        relay=relay,
        password_hasher=PasswordHasher(
            rounds=settings.bcrypt_rounds,
            concurrency=settings.password_hash_concurrency,
            queue_seconds=settings.password_hash_queue_seconds,
        ),
        login_throttle=LoginThrottle(
            redis,
            prefix=limits_prefix,
            per_pair=settings.login_failures_per_pair,
            per_account=settings.login_failures_per_account,
            per_address=settings.login_failures_per_address,
            window_seconds=settings.login_failure_window_seconds,
            max_delay_seconds=settings.login_delay_max_seconds,
            known_for_seconds=settings.login_known_address_days * 86400,
        ),
        route_budgets=RouteBudgets(
            RateLimiter(redis, prefix=limits_prefix),
            enabled=settings.route_budgets_on,
            window=60,
            limits={
                "register:address": settings.register_per_address_per_minute,
                "login:address": settings.login_per_address_per_minute,
                "login:account": settings.login_per_account_per_minute,
                "refresh:address": settings.refresh_per_address_per_minute,
                "password:account": settings.password_change_per_account_per_minute,
                "password:address": settings.password_change_per_address_per_minute,
            },
        ),
        token_issuer=TokenIssuer(
            config=settings.token_config(),
            access_ttl=timedelta(minutes=settings.access_token_expire_minutes),
            refresh_ttl=timedelta(days=settings.refresh_token_expire_days),
            session_ttl=timedelta(days=settings.session_max_lifetime_days),
        ),
    )
