"""A service's typed state: built once by its lifespan, read by dependencies from `request.state`.

Each service declares one frozen dataclass `State(ServiceResources)` with everything its
requests need (clients, services, settings), builds it in `service_lifespan`'s `start`, and
reads it back with `service_state(request, State)` in its dependencies, which return typed
objects. The lifespan yields `{STATE_KEY: state}`; the server copies that into every request's
`request.state` (ASGI lifespan state), so nothing is looked up on `app.state` by name.

The kit's own dependencies (the database session, readiness) read the same record through
`resources(request)`, so a service that forgot a resource fails with an error naming it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from starlette.requests import HTTPConnection, Request

from taskflow_kit.background import running

if TYPE_CHECKING:
    import asyncpg
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

T = TypeVar("T")
S = TypeVar("S", bound="ServiceResources")
AnyState = TypeVar("AnyState", bound="ServiceResources")

STATE_KEY = "taskflow"

Check = Callable[[], Awaitable[object]]


class MissingResource(RuntimeError):
    """A kit dependency needs a resource the service did not put in its state (a wiring
    mistake)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceResources:
    """The connections a service shares with the kit, and the base of every service's `State`.
    A field is None where the service has none (stats-service keeps no database; only a service
    whose hot paths run on asyncpg has a `pool`). `checks` are readiness checks beyond the
    database and Redis (stats-service: task-service answers)."""

    engine: AsyncEngine | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    redis: Redis | None = None
    pool: asyncpg.Pool | None = None
    checks: Mapping[str, Check] = field(default_factory=dict)

    def need_engine(self) -> AsyncEngine:
        return _present(self.engine, "engine")

    def need_sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return _present(self.sessionmaker, "sessionmaker")

    def need_redis(self) -> Redis:
        return _present(self.redis, "redis")

    def need_pool(self) -> asyncpg.Pool:
        return _present(self.pool, "pool")


def lifespan_state(state: ServiceResources) -> dict[str, Any]:
    """What a lifespan yields so that every request carries `state` (ASGI lifespan state)."""
    return {STATE_KEY: state}


def service_state(connection: HTTPConnection, kind: type[S]) -> S:
    """The state the lifespan yielded, as the service's own `State` type."""
    found = getattr(connection.state, STATE_KEY, None)
    if not isinstance(found, kind):
        raise MissingResource(
            f"no {kind.__name__} in the request's state: the service's lifespan must yield "
            "taskflow_kit.resources.lifespan_state(state) (see service_lifespan)"
        )
    return found


def state_dependency(kind: type[S]) -> Callable[[Request], Awaitable[S]]:
    """The request dependency that returns the service's `State` (`Depends(...)` it once, in
    the service's `state.py`)."""

    async def get_state(request: Request) -> S:
        return service_state(request, kind)

    return get_state


def resources(connection: HTTPConnection) -> ServiceResources:
    """The resources of the service serving `connection` (a request or a WebSocket)."""
    return service_state(connection, ServiceResources)


@dataclass(frozen=True, slots=True)
class Started(Generic[AnyState]):
    """What a service's `start` returns: its state and the background jobs to run with it."""

    state: AnyState
    jobs: tuple[Coroutine[Any, Any, None], ...] = ()


def service_lifespan(
    start: Callable[[contextlib.AsyncExitStack], Awaitable[Started[Any]]],
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[dict[str, Any]]]:
    """The lifespan every service uses: `start(stack)` opens what the service needs (pushing
    each close onto `stack`) and returns its state and background jobs; the jobs run while the
    service serves, then are cancelled, then everything is closed in the reverse order of
    opening — also when `start` fails half-way."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            started = await start(stack)
            async with running(*started.jobs):
                yield lifespan_state(started.state)

    return lifespan


def _present(value: T | None, name: str) -> T:
    if value is None:
        raise MissingResource(
            f"the service's state has no {name}: pass {name}= to its State in the lifespan"
        )
    return value
