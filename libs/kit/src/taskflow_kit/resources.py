"""What the kit's dependencies read from a running service: one typed record, given once.

A service's lifespan opens its engine and Redis client, then hands them to the kit with
`attach_resources(app, ServiceResources(...))`. The kit reads them back only through
`resources(request)` (the session dependency, the readiness checks), so a service that forgot
a resource fails with an error naming it rather than an `AttributeError` on `app.state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

T = TypeVar("T")

_KEY = "taskflow_resources"


class MissingResource(RuntimeError):
    """A kit dependency needs a resource the service did not attach (a wiring mistake)."""


@dataclass(frozen=True, slots=True)
class ServiceResources:
    """The connections a service shares with the kit; a field is None where the service has
    none (stats-service keeps no database; only a service whose hot paths run on asyncpg has a
    `pool`)."""

    engine: AsyncEngine | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    redis: Redis | None = None
    pool: asyncpg.Pool | None = None

    def need_engine(self) -> AsyncEngine:
        return _present(self.engine, "engine")

    def need_sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return _present(self.sessionmaker, "sessionmaker")

    def need_redis(self) -> Redis:
        return _present(self.redis, "redis")

    def need_pool(self) -> asyncpg.Pool:
        return _present(self.pool, "pool")


def attach_resources(app: Starlette, resources: ServiceResources) -> None:
    """Give the kit this service's resources (from the lifespan, before it yields).

    The fields are also kept as `app.state.engine` / `.sessionmaker` / `.redis` / `.pool` for
    tests and scripts that reach into a running app; the kit itself never reads those names."""
    setattr(app.state, _KEY, resources)
    app.state.engine = resources.engine
    app.state.sessionmaker = resources.sessionmaker
    app.state.redis = resources.redis
    app.state.pool = resources.pool


def resources(source: HTTPConnection | Starlette) -> ServiceResources:
    """The resources attached to the app serving `source` (a request, a WebSocket or the app)."""
    app = source if isinstance(source, Starlette) else source.app
    found = getattr(app.state, _KEY, None)
    if not isinstance(found, ServiceResources):
        raise MissingResource(
            "no ServiceResources attached to this app: call "
            "taskflow_kit.resources.attach_resources(app, ...) in the service's lifespan"
        )
    return found


def _present(value: T | None, name: str) -> T:
    if value is None:
        raise MissingResource(
            f"the service attached no {name}: pass {name}= to ServiceResources in its lifespan"
        )
    return value
