"""Test helpers shared by the services' suites: throwaway databases on a real PostgreSQL (those
need the `[db]` extra, imported when used), a running app's state for in-process clients."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from taskflow_kit.events import epoch_key
from taskflow_kit.redis_client import create_redis
from taskflow_kit.resources import STATE_KEY, ServiceResources, lifespan_state
from taskflow_kit.revocation import REVOKING_PRODUCER

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy import MetaData
    from sqlalchemy.ext.asyncio import AsyncEngine

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def test_database_server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def test_redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def migrated_database(prefix: str, alembic_ini: Path) -> AsyncIterator[str]:
    """A new database with every migration applied; dropped afterwards."""
    from sqlalchemy.engine import make_url

    from taskflow_kit.migrations import drop_database, prepare_database

    url = make_url(test_database_server_url()).set(database=unique_name(prefix))
    database_url = url.render_as_string(hide_password=False)
    try:
        await prepare_database(alembic_ini, database_url)
        yield database_url
    finally:
        await drop_database(database_url)


# A table holding at least this many rows is truncated rather than deleted from. TRUNCATE
# replaces every file of the table (`task`: heap, 21 indexes, TOAST: ~10 ms on a quiet machine,
# far more under I/O load); DELETE costs ~1 us a row but leaves the rows dead and the table's
# size and statistics as they were. Past a test's handful of rows, a fresh table wins: the plan
# tests load tens of thousands of rows and ANALYZE, and the next test must not inherit them.
TRUNCATE_FROM_ROWS = 1_000


def _reset_sql(engine: AsyncEngine, metadata: MetaData) -> str:
    """The reset as one DO block: the tables (children first) and every step run server-side,
    one round trip."""
    quote = engine.dialect.identifier_preparer.format_table
    names = ", ".join(
        "'" + quote(table).replace("'", "''") + "'" for table in reversed(metadata.sorted_tables)
    )
    return f"""DO $reset$
DECLARE
    tables regclass[] := ARRAY[{names}];
    target regclass;
    held bigint;
BEGIN
    SET LOCAL session_replication_role = replica;
    FOREACH target IN ARRAY tables LOOP
        EXECUTE format(
            'SELECT count(*) FROM (SELECT FROM %s LIMIT {TRUNCATE_FROM_ROWS}) AS held', target
        ) INTO held;
        IF held >= {TRUNCATE_FROM_ROWS} THEN
            EXECUTE format('TRUNCATE %s CASCADE', target);
        ELSIF held > 0 THEN
            EXECUTE format('DELETE FROM %s', target);
        END IF;
    END LOOP;
    PERFORM setval(sequence.seqrelid, sequence.seqstart, false)
    FROM pg_sequence AS sequence
    JOIN pg_depend AS owned
        ON owned.classid = 'pg_class'::regclass AND owned.objid = sequence.seqrelid
        AND owned.refclassid = 'pg_class'::regclass AND owned.deptype IN ('a', 'i')
    WHERE owned.refobjid = ANY(tables) AND pg_sequence_last_value(sequence.seqrelid) IS NOT NULL;
END
$reset$"""  # noqa: S608 (names from the metadata, quoted)


async def empty_tables(engine: AsyncEngine, metadata: MetaData) -> None:
    """Empty every table of `metadata` and restart the sequences its columns own, as
    `TRUNCATE ... RESTART IDENTITY` would: the per-test reset for tests that really commit.

    One statement, run by the server. An empty table is skipped; one with a few rows is
    emptied with DELETE, which takes no exclusive lock (TRUNCATE waits for every transaction
    that has read the table) and writes no files (TRUNCATE of task-service's ten tables
    replaced 55 files per test); one with `TRUNCATE_FROM_ROWS` rows or more is truncated.
    Triggers and foreign-key actions do not fire (the transaction acts as a replica, which
    takes a superuser, as the test server's `postgres` is): emptying is no change for the
    application to record (task-service's `task_tally` would count the deleted tasks), and
    with every table emptied no order between them matters. A table outside `metadata`
    (`alembic_version`) keeps its rows, unless it references a table large enough to be
    truncated (TRUNCATE ... CASCADE empties it too, as the reset always did)."""
    from sqlalchemy import text

    if not metadata.sorted_tables:
        return
    async with engine.begin() as connection:
        await connection.execute(text(_reset_sql(engine, metadata)))


async def mark_revocations_complete(redis_url: str, key_prefix: str) -> None:
    """Set user-service's epoch key, as its relay does once the revocation hashes are complete:
    for a suite that runs a service without user-service (otherwise its token check answers
    503 until one appears, see `taskflow_kit.revocation`)."""
    redis = create_redis(redis_url)
    try:
        await redis.set(epoch_key(key_prefix, REVOKING_PRODUCER), "test")
    finally:
        await redis.aclose()


class WithState:
    """`app` with `state` in every request's scope, as a server that ran the lifespan puts it
    (httpx's `ASGITransport` runs no lifespan)."""

    def __init__(self, app: Starlette, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "state": {**scope.get("state", {}), **self.state}}
        await self.app(scope, receive, send)

    def replace(self, **changes: Any) -> None:
        """Serve the next requests with some fields of the service's state replaced (a test
        double in place of a part)."""
        service = self.state[STATE_KEY]
        self.state[STATE_KEY] = dataclasses.replace(service, **changes)
        for name, value in changes.items():
            setattr(self.app.state, name, value)


def with_state(app: Starlette, state: ServiceResources) -> WithState:
    """`app` serving requests with `state`, without a lifespan (a tiny app in a kit test)."""
    return WithState(app, lifespan_state(state))


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[WithState]:
    """Run `app`'s lifespan and yield it as an ASGI app whose requests carry the state the
    lifespan yielded. For tests that reach into the running service, the state's fields are
    also set on `app.state` (`app.state.engine`, ...); service code never reads them there."""
    async with app.router.lifespan_context(app) as yielded:
        state = dict(yielded or {})
        service = state.get(STATE_KEY)
        if isinstance(service, ServiceResources):
            for item in dataclasses.fields(service):
                setattr(app.state, item.name, getattr(service, item.name))
        yield WithState(app, state)


def modules_reading_app_state(package: ModuleType) -> list[str]:
    """The modules of `package` that look anything up on `app.state` (a service reads its typed
    `State` through `request.state` instead; see `taskflow_kit.resources`)."""
    root = Path(str(package.__file__)).parent
    return sorted(str(path) for path in root.rglob("*.py") if "app.state" in path.read_text())


def sql_literal(value: Any) -> str:
    """`value` as an SQL literal of unknown type (EXECUTE casts it to the parameter's type)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        quoted = (str(item).replace("\\", "\\\\").replace('"', '\\"') for item in value)
        value = "{" + ",".join(f'"{item}"' for item in quoted) + "}"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


async def explain_as_run(
    connection: asyncpg.Connection, sql: str, args: list[Any], *, per_call: bool
) -> str:
    """`EXPLAIN (ANALYZE, FORMAT JSON)` of `sql` run with `args`, with the plan a service
    really runs it with: planned for these values when it is planned per call
    (`taskflow_kit.db.planned_per_call`: EXPLAIN of a statement with parameters plans for the
    values given, whatever `plan_cache_mode` says); otherwise the generic plan, the one a
    database set to `force_generic_plan` caches for every caller's values (PREPARE, then
    EXPLAIN EXECUTE under that setting)."""
    if per_call:
        explained: str = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
        return explained
    await connection.execute(f"PREPARE generic AS {sql}")
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        execute = "EXECUTE generic"
        if args:
            execute += "(" + ", ".join(sql_literal(arg) for arg in args) + ")"
        explained = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}")
    finally:
        await connection.execute("RESET plan_cache_mode; DEALLOCATE generic")
    return explained


class Recording:
    """An asyncpg connection that remembers every statement run on it (`fetch`, `fetchrow`,
    `fetchval`, `execute`) with its arguments: a repository built on it shows what it ran."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.connection, name)
        if name not in ("fetch", "fetchrow", "fetchval", "execute"):
            return method

        async def recorded(sql: str, *args: Any) -> Any:
            self.statements.append((sql, args))
            return await method(sql, *args)

        return recorded


async def plans_of(connection: asyncpg.Connection, sql: str) -> tuple[int, int]:
    """(generic, custom) plans that `connection`'s prepared statements of `sql` ran with
    (`pg_prepared_statements`: (0, 0) when it was never prepared)."""
    row = await connection.fetchrow(
        "SELECT coalesce(sum(generic_plans), 0)::int AS generic, "
        "coalesce(sum(custom_plans), 0)::int AS custom "
        "FROM pg_prepared_statements WHERE statement = $1",
        sql,
    )
    assert row is not None  # an aggregate returns a row
    return row["generic"], row["custom"]


_LOCK_WAITERS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def lock_waiters(pool: asyncpg.Pool) -> int:
    """How many sessions of the pool's database wait for a lock now (asked outside any
    transaction: pg_stat_activity is read once per transaction)."""
    return int(await pool.fetchval(_LOCK_WAITERS))


async def until_a_lock_is_awaited(pool: asyncpg.Pool) -> None:
    """Return once some session of the pool's database waits for a lock (a race's request
    has reached the lock it was meant to wait for); TimeoutError after 10 s. Polled: the
    database tells nobody when a session starts waiting."""
    async with asyncio.timeout(10):
        while True:
            if await lock_waiters(pool):
                return
            await asyncio.sleep(0.01)


@asynccontextmanager
async def another_transaction(
    pool: asyncpg.Pool, *, commit: bool = True
) -> AsyncIterator[asyncpg.Connection]:
    """A race's other side: an open transaction on a connection of its own, committed when
    the block ends (rolled back with `commit=False`, or when the block raises)."""
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            yield connection
        except BaseException:
            await transaction.rollback()
            raise
        if commit:
            await transaction.commit()
        else:
            await transaction.rollback()


# These helpers are named test_* for readability; keep pytest from collecting them as tests
# when a test module imports them.
test_database_server_url.__test__ = False  # type: ignore[attr-defined]
test_redis_url.__test__ = False  # type: ignore[attr-defined]
