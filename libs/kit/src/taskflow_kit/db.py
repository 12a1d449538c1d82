"""Database access for services: the SQLAlchemy engine (schema, Alembic, the outbox relay and
event consumers), and asyncpg's pool with statements SQLAlchemy built, compiled once (every
request).

Two request dependencies hand out an asyncpg connection: `get_transaction` (in one transaction)
and `get_connection` (not). Each commits or rolls back and does nothing else: an effect after
the commit (such as publishing events) is a named step of the code that wants it, never a hook
of the dependency.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import structlog
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy import MetaData, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as AsyncpgDialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow_kit.dberrors import rerunnable, sqlstate
from taskflow_kit.resources import resources

logger = structlog.get_logger("taskflow.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata() -> MetaData:
    """Metadata with the constraint naming convention every service uses."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def async_database_url(url: str) -> str:
    """Accept `postgresql://` / `postgres://` URLs and select the asyncpg driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    """The same URL as a plain `postgresql://` DSN for asyncpg itself (LISTEN, administration),
    optionally naming another database on the same server."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1)).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_recycle: float = 300,
    idle_in_transaction_timeout: float | None = None,
) -> AsyncEngine:
    """The service's engine (migrations, the outbox relay, event consumers, readiness). No
    pre-ping per checkout (three round trips: `BEGIN; SELECT; ROLLBACK`); instead connections
    are replaced after `pool_recycle` seconds, and one found dead in use (database restarted,
    backend terminated) fails that use with a disconnect error, which SQLAlchemy answers by
    invalidating that connection and every other one pooled before it. The next use gets a
    fresh connection. `idle_in_transaction_timeout`: as for `create_pool` (a relay frozen
    mid-round would otherwise hold the relay lock, and every replica's events, until it woke).
    """
    connect_args: dict[str, Any] = {} if tls_configured(url) else {"ssl": False}
    settings = _session_settings(idle_in_transaction_timeout)
    if settings:
        connect_args["server_settings"] = settings
    return _create_async_engine(
        async_database_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,
        pool_recycle=pool_recycle,
        connect_args=connect_args,
    )


def tls_configured(url: str) -> bool:
    """Whether the URL (or libpq's environment) says how to use TLS. When nothing does, the
    kit connects without it: asyncpg's own default (`prefer`) first attempts a TLS handshake,
    a wasted round trip per new connection on loopback or a private network."""
    query = make_url(url.replace("postgres://", "postgresql://", 1)).query
    return "sslmode" in query or "ssl" in query or "PGSSLMODE" in os.environ


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def ping_database(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


# -- asyncpg: the hot paths -------------------------------------------------------------------

_DIALECT = AsyncpgDialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Statement:
    """A SQLAlchemy statement compiled once for asyncpg: its SQL (`$1`, `$2`, ...) and which
    named parameter goes in each position. asyncpg prepares it once per connection (its
    statement cache), so a request pays neither SQLAlchemy's compilation nor a `PREPARE`, and
    after five runs PostgreSQL may keep one generic plan for it: no planning at all.

    `plan_per_call` is for a statement whose best plan depends on how selective its values are
    (a tag one user holds on half their million tasks and another on three): one generic plan
    serves some values 20x slower than their own plan. Such a statement is planned for its
    values on every call (`plan_cache_mode = force_custom_plan` around it): it pays its planning
    and, when its connection was on cached plans, a round trip for the setting
    (`PlanModeConnection`); every other statement neither. A database whose
    other statements must never be planned per call says `force_generic_plan` for itself (so
    does task-service's, migration 0006_h16d)."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    plan_per_call: bool = False

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments, from `values` by name (literals the statement was built
        with keep their value)."""
        return [values[name] if name in values else self.defaults[name] for name in self.names]

    async def fetch(self, connection: asyncpg.Connection, **values: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run(connection.fetch, connection, values)
        return rows

    async def fetchrow(
        self, connection: asyncpg.Connection, **values: Any
    ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._run(connection.fetchrow, connection, values)
        return row

    async def fetchval(self, connection: asyncpg.Connection, **values: Any) -> Any:
        return await self._run(connection.fetchval, connection, values)

    async def execute(self, connection: asyncpg.Connection, **values: Any) -> str:
        status: str = await self._run(connection.execute, connection, values)
        return status

    async def _run(
        self,
        method: Callable[..., Awaitable[Any]],
        connection: asyncpg.Connection,
        values: Mapping[str, Any],
    ) -> Any:
        if not self.plan_per_call:
            if _PLANNING.get() is not connection:
                await on_cached_plans(connection)
            return await method(self.sql, *self.args(values))
        async with planned_per_call(connection):
            return await method(self.sql, *self.args(values))


class PlanModeConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """An asyncpg connection that remembers whether its session was set to plan every
    statement for its values (`planned_per_call`), so that setting is changed only when a
    statement needs the other one: a run of listings on one pooled connection pays no round
    trip for it, a listing after a read one (SET), a read after a listing one (RESET). Fresh
    connections start on the database's own setting (cached plans, `force_generic_plan`).

    The flag errs on the safe side: it is set once the server has taken the SET, and cleared
    before the RESET is sent, so a failed round trip can leave a statement planned once more
    than needed, never a listing on a cached plan."""

    __slots__ = ("_per_call",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._per_call = False

    def plans_per_call(self) -> bool:
        return self._per_call

    def note_plans_per_call(self, per_call: bool) -> None:
        self._per_call = per_call


# What a statement planned for its values runs under (`planned_per_call`).
PLAN_PER_CALL = "plan_cache_mode = force_custom_plan"
# The connection whose statements are being planned per call in this task (`planned_per_call`).
_PLANNING: ContextVar[asyncpg.Connection | None] = ContextVar("planning", default=None)


@asynccontextmanager
async def planned_per_call(connection: asyncpg.Connection) -> AsyncIterator[None]:
    """Every statement run on `connection` inside is planned for its values. PostgreSQL reads
    `plan_cache_mode` at each execution, so a cached statement is planned afresh. One setting
    serves several statements (a page and its total), and a `plan_per_call` statement inside
    adds none. On a pool's connection (`PlanModeConnection`) the session keeps the setting
    after the block, until a statement on cached plans puts it back (`on_cached_plans`): no
    round trip while listings follow each other. In a transaction the setting is SET LOCAL
    (it ends with the transaction, on rollback too); on another connection it is put back to
    the session's default after the block."""
    if _PLANNING.get() is connection:
        yield
        return
    remembers = getattr(connection, "plans_per_call", None)
    restore = False
    if remembers is not None and remembers():
        pass  # the session plans every statement per call already
    elif connection.is_in_transaction():
        await connection.execute(f"SET LOCAL {PLAN_PER_CALL}")
    else:
        await connection.execute(f"SET {PLAN_PER_CALL}")
        if remembers is None:
            restore = True
        else:
            connection.note_plans_per_call(True)
    token = _PLANNING.set(connection)
    try:
        yield
    finally:
        _PLANNING.reset(token)
        if restore:
            await connection.execute("RESET plan_cache_mode")


async def on_cached_plans(connection: asyncpg.Connection) -> None:
    """Put a pool connection that a listing left planning per call back on the database's
    setting (cached plans), before a statement that should use them; nothing to do (and no
    round trip) otherwise. In a transaction the session's setting stays as it is: a transaction
    is put back before it begins (`get_transaction`)."""
    remembers = getattr(connection, "plans_per_call", None)
    if remembers is None or not remembers() or connection.is_in_transaction():
        return
    connection.note_plans_per_call(False)
    await connection.execute("RESET plan_cache_mode")


def compile_statement(statement: ClauseElement, *, plan_per_call: bool = False) -> Statement:
    """Compile `statement` for asyncpg. Parameters are `bindparam(name)`s given by name at
    execution; a list is one array parameter (`column == any_(bindparam(...))`), never an
    expanding `IN`, so that the SQL does not depend on the values. `plan_per_call`: see
    `Statement`."""
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    names = tuple(compiled.positiontup or ())
    if any(compiled.binds[name].expanding for name in names):
        raise ValueError("expanding IN parameters change the SQL per call; use = ANY(array)")
    return Statement(compiled.string, names, dict(compiled.params), plan_per_call)


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg's default runs `RESET ALL; UNLISTEN *; ...` on every
    release, a round trip per request; the kit's connections change no session state (advisory
    locks are transaction-scoped, LISTEN has its own connection) and an open transaction is
    still rolled back by the pool before this is called."""


async def _json_codecs(connection: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(
    url: str,
    *,
    min_size: int = 10,
    max_size: int = 20,
    statement_cache_size: int = 512,
    idle_in_transaction_timeout: float | None = None,
) -> asyncpg.Pool:
    """The service's asyncpg pool: `min_size` connections opened up front and every connection
    kept (nothing is opened per request, none is closed for being idle), without TLS unless the
    URL configures it, JSON decoded, prepared statements cached per connection
    (`statement_cache_size` covers every shape of a service's statements).

    `idle_in_transaction_timeout` (seconds): PostgreSQL ends a session whose transaction waits
    longer than this for its next statement, and so releases its locks. A request's statements
    follow each other within milliseconds; a longer wait means its process froze or stalled
    (stopped, swapped, a long pause), and without the limit every other replica's write to the
    rows it locked (a user's counters, say) would wait until it woke. Its own request then fails
    with `DatabaseConnectionLost` (503), and the pool replaces the connection.

    A database that is not up yet does not stop the service from starting: the pool opens its
    connections on the first requests instead (which answer 503 while it is down)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=0,
        max_size=max_size,
        max_inactive_connection_lifetime=0,
        ssl=None if tls_configured(url) else False,
        statement_cache_size=statement_cache_size,
        connection_class=PlanModeConnection,
        init=_json_codecs,
        reset=_nothing_to_reset,
        server_settings=_session_settings(idle_in_transaction_timeout),
    )
    await _open(pool, min_size)
    return pool


def _session_settings(idle_in_transaction_timeout: float | None) -> dict[str, str] | None:
    if idle_in_transaction_timeout is None:
        return None
    milliseconds = max(1, round(idle_in_transaction_timeout * 1000))
    return {"idle_in_transaction_session_timeout": str(milliseconds)}


async def _open(pool: asyncpg.Pool, count: int) -> None:
    held: list[asyncpg.Connection] = []
    try:
        for _ in range(count):
            held.append(await pool.acquire(timeout=5))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        pass  # not reachable yet: connections open on demand
    finally:
        for connection in held:
            await pool.release(connection)


class DatabaseConnectionLost(ConnectionError):
    """The request's connection closed under it (the server restarted, its backend was
    terminated). A `ConnectionError`, so the error boundary answers 503 + Retry-After as for any
    unreachable database; asyncpg's own "connection is closed" error says nothing of the kind.
    The pool opens a new connection for the next request."""


LOST = "the database connection was lost"


def _is_lost(connection: asyncpg.Connection, exc: Exception) -> bool:
    if isinstance(exc, asyncpg.InternalClientError):
        return True  # the protocol lost track of a connection that broke mid-operation
    try:
        closed: bool = connection.is_closed()
    except asyncpg.InterfaceError:
        return True  # the pool took back a connection that died under the request
    return closed


async def get_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection for a request that only reads (each statement its own snapshot)."""
    async with resources(request).need_pool().acquire() as connection:
        try:
            yield connection
        except Exception as exc:
            if _is_lost(connection, exc):
                raise DatabaseConnectionLost(LOST) from exc
            raise


@asynccontextmanager
async def in_transaction(
    connection: asyncpg.Connection, *, commit_despite: tuple[type[BaseException], ...] = ()
) -> AsyncIterator[None]:
    """One transaction on `connection`, begun on cached plans (a write runs on them; a pool
    connection a listing left planning per call is put back first): committed when the block
    ends, rolled back if it raises, except for a `commit_despite` exception, which commits
    what was done before re-raising (an effect that must stand although the request fails,
    such as user-service's refresh-token reuse)."""
    await on_cached_plans(connection)
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield
    except commit_despite:
        await transaction.commit()
        raise
    except BaseException:
        await transaction.rollback()
        raise
    await transaction.commit()


RERUN_ATTEMPTS = 3


class _Run:
    """One run's side of the request: the messages earlier runs received (the body) first,
    then the client's, each kept for the runs after it; and whether the run started its
    answer."""

    def __init__(self, received: list[Message], receive: Receive, send: Send) -> None:
        self._received = received
        self._replay = iter(list(received))
        self._receive = receive
        self._send = send
        self.started = False

    async def receive(self) -> Message:
        message = next(self._replay, None)
        if message is None:
            message = await self._receive()
            self._received.append(message)
        return message

    async def send(self, message: Message) -> None:
        self.started = True
        await self._send(message)


def rerun_on_conflict(app: ASGIApp, *, attempts: int = RERUN_ATTEMPTS) -> ASGIApp:
    """`app` (one route's request) run again from the start, up to `attempts` runs in all,
    when PostgreSQL aborts its transaction as a deadlock's victim or for a serialization
    failure; the last run's error propagates (answered 503 + Retry-After).

    Such an error comes before the answer starts (the request transaction commits before
    the response is sent), and the aborted run's transaction was rolled back whole, so a new
    run, with new dependencies and a new transaction, meets the other transaction's committed
    outcome. What a run does outside the database (a rate-limit count, a log line) happens
    again. The body reaches every run: what one run received is kept (no more than the route
    reads, so its size limit still applies) and replayed to the next. An answer that started
    is never run again."""

    async def run(scope: Scope, receive: Receive, send: Send) -> None:
        received: list[Message] = []
        for attempt in range(1, attempts + 1):
            run_io = _Run(received, receive, send)
            try:
                await app(scope, run_io.receive, run_io.send)
                return
            except Exception as exc:
                if run_io.started or attempt == attempts or not rerunnable(exc):
                    raise
                logger.warning(
                    "request_rerun", path=scope.get("path"), sqlstate=sqlstate(exc), run=attempt
                )

    return run


class RerunOnConflictRoute(APIRoute):
    """A route run again when PostgreSQL aborts its transaction in a race a rerun resolves
    (`rerun_on_conflict`): `APIRouter(route_class=RerunOnConflictRoute)` for a service's
    writing routes. It wraps `handle`, the one entry FastAPI calls for a route, directly or
    through an included router."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rerunning = rerun_on_conflict(super().handle)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._rerunning(scope, receive, send)


async def get_transaction(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection in one transaction for the request (`in_transaction`): committed
    when the endpoint returns, rolled back if it raises.
    Declared with `scope="function"`: the commit happens before the response is sent."""
    async with resources(request).need_pool().acquire() as connection:
        try:
            async with in_transaction(connection):
                yield connection
        except Exception as exc:
            # A dead connection fails the statement, the rollback or the commit, each with its
            # own asyncpg error: all of them mean the database went away.
            if _is_lost(connection, exc):
                raise DatabaseConnectionLost(LOST) from exc
            raise


ConnectionDep = Annotated[asyncpg.Connection, Depends(get_connection, scope="function")]
TransactionDep = Annotated[asyncpg.Connection, Depends(get_transaction, scope="function")]
