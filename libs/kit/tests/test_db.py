"""The request transaction (asyncpg) commits on success and rolls back on error; statements
compiled once run on asyncpg; the engine (the relay's and consumers') replaces dead connections
(real PostgreSQL)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import BigInteger, Integer, bindparam, column, literal, select, table, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs
from taskflow_kit.db import (
    PLAN_PER_CALL,
    ConnectionDep,
    RerunOnConflictRoute,
    TransactionDep,
    async_database_url,
    asyncpg_dsn,
    compile_statement,
    create_engine,
    create_pool,
    in_transaction,
    planned_per_call,
    rerun_on_conflict,
    tls_configured,
)
from taskflow_kit.db import _is_lost as is_lost
from taskflow_kit.dberrors import is_unavailable_database
from taskflow_kit.errors import Conflict, ProblemError, install_error_handlers
from taskflow_kit.migrations import alter_database, drop_database, ensure_database
from taskflow_kit.resources import ServiceResources
from taskflow_kit.testing import (
    WithState,
    plans_of,
    test_database_server_url,
    unique_name,
    until_a_lock_is_awaited,
    with_state,
)


def test_async_url_selects_asyncpg() -> None:
    assert async_database_url("postgres://u@h/db").startswith("postgresql+asyncpg://")
    assert async_database_url("postgresql://u:p@h:5/db") == "postgresql+asyncpg://u:p@h:5/db"


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    url = (
        make_url(test_database_server_url())
        .set(database=unique_name("tf_kit"))
        .render_as_string(hide_password=False)
    )
    assert await ensure_database(url) is True
    assert await ensure_database(url) is False
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE item (name text PRIMARY KEY)"))
    yield engine
    await engine.dispose()
    await drop_database(url)


@pytest.fixture(scope="module")
async def pool(engine: AsyncEngine) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(engine.url.render_as_string(hide_password=False), min_size=1)
    yield pool
    await pool.close()


def _outcome(name: str) -> dict[str, str]:
    if name.startswith("fail"):
        raise Conflict("refused after writing")
    return {"name": name}


@pytest.fixture
def app(engine: AsyncEngine, pool: asyncpg.Pool) -> WithState:
    app = FastAPI()
    install_error_handlers(app)
    served = with_state(app, ServiceResources(pool=pool))

    @app.post("/asyncpg/{name}", status_code=201)
    async def add_on_asyncpg(name: str, connection: TransactionDep) -> dict[str, str]:
        await connection.execute("INSERT INTO item VALUES ($1)", name)
        return _outcome(name)

    return served


async def count(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT count(*) FROM item WHERE name = :n"), {"n": name}
        )
        return int(result.scalar_one())


async def test_commit_happens_before_the_response(app: WithState, engine: AsyncEngine) -> None:
    via = "asyncpg"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post(f"/{via}/kept-{via}")
        assert response.status_code == 201
        # Read through another connection right after the response: the row is there.
        assert await count(engine, f"kept-{via}") == 1


async def test_error_rolls_back(app: WithState, engine: AsyncEngine) -> None:
    via = "asyncpg"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post(f"/{via}/fail-{via}")
    assert response.status_code == 409
    assert await count(engine, f"fail-{via}") == 0


async def test_in_transaction_commits_despite_only_the_named_exceptions(
    pool: asyncpg.Pool, engine: AsyncEngine
) -> None:
    """An effect that must stand although the request fails (`commit_despite`) is committed
    and the exception still raised; any other exception rolls the transaction back."""

    class Kept(Exception):
        pass

    async def write(connection: asyncpg.Connection, name: str, error: Exception) -> None:
        async with in_transaction(connection, commit_despite=(Kept,)):
            await connection.execute("INSERT INTO item VALUES ($1)", name)
            raise error

    async with pool.acquire() as connection:
        with pytest.raises(Kept):
            await write(connection, "kept-despite", Kept())
        with pytest.raises(Conflict):
            await write(connection, "rolled-back", Conflict("refused after writing"))
    assert await count(engine, "kept-despite") == 1
    assert await count(engine, "rolled-back") == 0


async def test_a_deadlocks_victim_is_run_again_and_meets_the_other_transactions_outcome(
    engine: AsyncEngine, pool: asyncpg.Pool
) -> None:
    """A real deadlock between a route's request transaction and another transaction: the
    request's first run is rolled back whole (the other gets its lock), and its second run,
    with the same body, commits after the other did."""
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE slot (id int PRIMARY KEY, owner text)"))
        await connection.execute(text("INSERT INTO slot VALUES (1, NULL), (2, NULL)"))
    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter(route_class=RerunOnConflictRoute)
    runs: list[str] = []

    @router.post("/take")
    async def take_both(body: dict[str, str], connection: TransactionDep) -> dict[str, int]:
        # This side looks for a deadlock after 50 ms of waiting, the other only after 30 s:
        # PostgreSQL aborts this one.
        await connection.execute("SET LOCAL deadlock_timeout = '50ms'")
        runs.append(body["owner"])
        await connection.execute("UPDATE slot SET owner = $1 WHERE id = 1", body["owner"])
        await connection.execute("UPDATE slot SET owner = $1 WHERE id = 2", body["owner"])
        return {"runs": len(runs)}

    app.include_router(router)
    served = with_state(app, ServiceResources(pool=pool))
    dsn = asyncpg_dsn(engine.url.render_as_string(hide_password=False))
    other = await asyncpg.connect(dsn, server_settings={"deadlock_timeout": "30s"})
    try:
        holding = other.transaction()
        await holding.start()
        await other.execute("UPDATE slot SET owner = 'other' WHERE id = 2")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served), base_url="http://t"
        ) as client:
            with capture_logs() as logs:
                request = asyncio.create_task(client.post("/take", json={"owner": "request"}))
                await until_a_lock_is_awaited(pool)  # the request holds 1, waits for 2
                await other.execute("UPDATE slot SET owner = 'other' WHERE id = 1")  # the cycle
                await holding.commit()
                response = await asyncio.wait_for(request, 10)
    finally:
        await other.close()
    async with engine.begin() as connection:
        owners = (await connection.execute(text("SELECT owner FROM slot ORDER BY id"))).all()
        await connection.execute(text("DROP TABLE slot"))
    assert response.status_code == 200, (response.text, runs)
    assert response.json() == {"runs": 2}
    assert runs == ["request", "request"]  # the body reached both runs
    assert [(entry["event"], entry["sqlstate"]) for entry in logs] == [("request_rerun", "40P01")]
    assert [owner for (owner,) in owners] == ["request", "request"]


class _Runs:
    """A route that fails with `error` (after `started`, if set) and records each run's body."""

    def __init__(self, error: Exception, *, started: bool = False) -> None:
        self.error = error
        self.started = started
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        if self.started:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise self.error


async def _call(app: Any) -> None:
    messages = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"c", "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        pass

    await app({"type": "http", "method": "POST", "path": "/"}, receive, send)


async def test_a_request_that_keeps_deadlocking_fails_after_its_attempts() -> None:
    """Every run gets the whole body; the last run's error propagates (the error boundary
    answers it 503 + Retry-After)."""
    route = _Runs(asyncpg.DeadlockDetectedError("deadlock detected"))
    with pytest.raises(asyncpg.DeadlockDetectedError) as raised:
        await _call(rerun_on_conflict(route, attempts=3))
    assert route.bodies == [b"abc"] * 3
    assert is_unavailable_database(raised.value)


@pytest.mark.parametrize(
    ("route", "error"),
    [
        (_Runs(Conflict("refused")), Conflict),  # no conflict of PostgreSQL's
        (_Runs(asyncpg.UniqueViolationError("duplicate key")), asyncpg.UniqueViolationError),
        # The answer started: it cannot be taken back, so the request is not run again.
        (_Runs(asyncpg.SerializationError("could not serialize"), started=True), Exception),
    ],
)
async def test_only_a_conflict_before_the_answer_is_run_again(
    route: _Runs, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await _call(rerun_on_conflict(route, attempts=3))
    assert route.bodies == [b"abc"]


def test_an_error_cannot_ask_the_session_to_commit() -> None:
    """No hidden effect in the generic dependency: an effect that must stand although the
    request fails is a named step of the route that needs it."""
    assert "commit" not in inspect.signature(ProblemError).parameters
    assert not hasattr(ProblemError, "commit")


async def test_a_compiled_statement_binds_by_name_and_keeps_its_literals(
    pool: asyncpg.Pool,
) -> None:
    series = compile_statement(
        text(
            "SELECT n * 10 FROM generate_series(1, 5) AS n "
            "WHERE n >= :low AND n <> :skip AND n >= :low ORDER BY n"
        ).bindparams(bindparam("low", type_=BigInteger), bindparam("skip", type_=BigInteger))
    )
    assert series.names.count("low") == 1  # one position however often it is used
    literals = compile_statement(
        select(literal(10, Integer) * bindparam("x", type_=Integer), literal("kept"))
    )
    async with pool.acquire() as connection:
        rows = await series.fetch(connection, low=2, skip=4)
        row = await literals.fetchrow(connection, x=4)
    assert [row[0] for row in rows] == [20, 30, 50]
    assert row is not None
    assert tuple(row) == (40, "kept")


async def test_a_statement_planned_per_call_gets_a_plan_for_each_call_and_leaves_no_setting(
    engine: AsyncEngine,
) -> None:
    """Under `force_generic_plan` (task-service's database) a statement keeps one cached plan;
    one marked `plan_per_call` is planned for its values on every run, in a transaction or
    not, and the session's setting is the same afterwards (also after an error)."""
    x = bindparam("x", type_=Integer)
    cached = compile_statement(text("SELECT 1 + :x").bindparams(x))
    per_call = compile_statement(text("SELECT 2 + :x - 1").bindparams(x), plan_per_call=True)
    failing = compile_statement(text("SELECT 1 / :x").bindparams(x), plan_per_call=True)

    connection = await asyncpg.connect(
        asyncpg_dsn(engine.url.render_as_string(hide_password=False)),
        server_settings={"plan_cache_mode": "force_generic_plan"},
    )
    try:
        for x in range(3):
            assert await cached.fetchval(connection, x=x) == 1 + x
            assert await per_call.fetchval(connection, x=x) == 1 + x
        async with connection.transaction():
            for x in range(3):
                assert await per_call.fetchval(connection, x=x) == 1 + x
            assert await connection.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        with pytest.raises(asyncpg.DivisionByZeroError):
            await failing.fetchval(connection, x=0)
        assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await plans_of(connection, cached.sql) == (3, 0)
        assert await plans_of(connection, per_call.sql) == (0, 6)
        # One setting for several statements: a per-call statement inside neither sets nor
        # resets it, and every statement inside is planned for its values.
        async with planned_per_call(connection):
            assert await per_call.fetchval(connection, x=1) == 2
            assert await connection.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
            assert await cached.fetchval(connection, x=1) == 2
        assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await plans_of(connection, cached.sql) == (3, 1)
        assert await plans_of(connection, per_call.sql) == (0, 7)
    finally:
        await connection.close()


async def test_a_pool_connection_changes_its_plan_setting_only_when_a_statement_needs_it(
    engine: AsyncEngine,
) -> None:
    """task-service's pool (`PlanModeConnection`): listings in a row set the per-call setting
    once, the next statement on cached plans puts it back once, the setting survives the
    connection's return to the pool, and a transaction begins on cached plans; each statement
    gets the plan it is marked for."""
    url = engine.url.render_as_string(hide_password=False)
    setup = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await setup.execute(alter_database(plan_cache_mode="force_generic_plan"))
    finally:
        await setup.close()
    x = bindparam("x", type_=Integer)
    cached = compile_statement(text("SELECT 1 + :x").bindparams(x))
    per_call = compile_statement(text("SELECT 2 + :x - 1").bindparams(x), plan_per_call=True)
    settings: list[str] = []

    def log(query: Any) -> None:
        if query.query.startswith(("SET", "RESET")):
            settings.append(query.query)

    pool = await create_pool(url, min_size=1, max_size=1)  # one connection: the same each time
    try:
        async with pool.acquire() as connection:
            connection.add_query_logger(log)
            for value in range(3):
                assert await per_call.fetchval(connection, x=value) == 1 + value
            assert settings == [f"SET {PLAN_PER_CALL}"]
            assert await connection.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        async with pool.acquire() as connection:  # back from the pool: still set
            assert await per_call.fetchval(connection, x=5) == 6
            assert len(settings) == 1
            for value in range(2):
                assert await cached.fetchval(connection, x=value) == 1 + value
            assert settings[1:] == ["RESET plan_cache_mode"]
            assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
            # In a transaction on cached plans: SET LOCAL, gone with the transaction.
            async with connection.transaction():
                assert await per_call.fetchval(connection, x=1) == 2
            assert settings[2:] == [f"SET LOCAL {PLAN_PER_CALL}"]
            assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
            # A transaction after a listing begins on cached plans (in_transaction, which
            # get_transaction uses).
            assert await per_call.fetchval(connection, x=1) == 2
            async with in_transaction(connection):
                assert await cached.fetchval(connection, x=2) == 3
            assert settings[3:] == [f"SET {PLAN_PER_CALL}", "RESET plan_cache_mode"]
            assert await plans_of(connection, per_call.sql) == (0, 6)
            assert await plans_of(connection, cached.sql) == (3, 0)
    finally:
        await pool.close()
        setup = await asyncpg.connect(asyncpg_dsn(url))  # the module's database, as it was
        try:
            await setup.execute(alter_database(plan_cache_mode=None))
        finally:
            await setup.close()


async def test_alter_database_sets_and_puts_back_a_databases_defaults(engine: AsyncEngine) -> None:
    """What the plan-mode migrations run: new sessions get the settings; None puts them back."""
    dsn = asyncpg_dsn(engine.url.render_as_string(hide_password=False))

    async def new_session_settings() -> tuple[str, str]:
        connection = await asyncpg.connect(dsn)
        try:
            return (
                await connection.fetchval("SHOW plan_cache_mode"),
                await connection.fetchval("SHOW jit"),
            )
        finally:
            await connection.close()

    default = await new_session_settings()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(alter_database(plan_cache_mode="force_generic_plan", jit="off"))
        assert await new_session_settings() == ("force_generic_plan", "off")
        await connection.execute(alter_database(plan_cache_mode=None, jit=None))
        assert await new_session_settings() == default
    finally:
        await connection.close()
    for bad in ({"jit": "off; DROP TABLE item"}, {"plan cache": "auto"}):
        with pytest.raises(ValueError, match="not a setting"):
            alter_database(**bad)


def test_expanding_in_is_refused() -> None:
    numbers = table("numbers", column("n"))
    with pytest.raises(ValueError, match="ANY"):
        compile_statement(
            select(numbers.c.n).where(numbers.c.n.in_(bindparam("ns", expanding=True)))
        )


async def test_the_pool_connects_without_tls_unless_configured(pool: asyncpg.Pool) -> None:
    assert tls_configured("postgresql://u@h/db?sslmode=require")
    assert not tls_configured("postgresql://u@h/db")
    async with pool.acquire() as connection:
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        ssl = await connection.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", backend)
    assert ssl is False


async def test_a_released_connection_keeps_its_prepared_statements(pool: asyncpg.Pool) -> None:
    # No reset query on release: the next request on the connection reuses what it prepared.
    async with pool.acquire() as connection:
        await connection.fetchval("SELECT $1::int + 1", 1)
        first = connection.get_server_pid()
    async with pool.acquire() as connection:
        assert connection.get_server_pid() == first  # min_size=1: the same connection
        prepared = await connection.fetchval(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int + 1%'"
        )
    assert prepared == 1


async def test_state_checks_report_each_dependency(engine: AsyncEngine) -> None:
    from taskflow_kit.health import health_router
    from taskflow_kit.redis_client import create_redis

    app = FastAPI()
    redis = create_redis("redis://127.0.0.1:1/0", timeout=0.2)
    served = with_state(app, ServiceResources(engine=engine, redis=redis))
    app.include_router(health_router())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=served), base_url="http://t"
    ) as client:
        response = await client.get("/ready")
    await redis.aclose()
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "up"
    assert checks["redis"]["status"] == "down"


async def backend_pids(engine: AsyncEngine, count: int) -> list[int]:
    """Check `count` connections out of the pool at once (so the pool holds that many)."""
    connections = [await engine.connect() for _ in range(count)]
    try:
        return [
            int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            for connection in connections
        ]
    finally:
        for connection in connections:
            await connection.close()


async def terminate(pids: list[int]) -> None:
    """`pg_terminate_backend` from a connection of its own, then wait until they are gone."""
    import asyncpg

    server = await asyncpg.connect(test_database_server_url())
    try:
        assert await server.fetchval(
            "SELECT bool_and(pg_terminate_backend(p)) FROM unnest($1::int[]) p", pids
        )
        deadline = asyncio.get_running_loop().time() + 10
        while await server.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
        ):
            assert asyncio.get_running_loop().time() < deadline, "backends not terminated"
            await asyncio.sleep(0.02)
    finally:
        await server.close()


@pytest.mark.parametrize("pooled", [1, 3])
async def test_a_terminated_pooled_connection_fails_one_use_at_most(
    engine: AsyncEngine, pooled: int
) -> None:
    # No pre-ping: a dead pooled connection is found by the work that uses it (a relay round,
    # an event), which fails with a disconnect error or succeeds, never hangs; SQLAlchemy
    # invalidates it and every connection pooled before it, so every later use gets a fresh one.
    own = create_engine(engine.url.render_as_string(hide_password=False), pool_size=pooled)
    try:
        old = await backend_pids(own, pooled)
        await terminate(old)
        outcomes: list[str] = []
        for _ in range(pooled + 3):
            try:
                async with asyncio.timeout(10), own.connect() as connection:
                    pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            except DBAPIError as exc:
                outcomes.append("lost" if exc.connection_invalidated else repr(exc))
            else:
                outcomes.append("old" if pid in old else "fresh")
        assert outcomes[0] in ("fresh", "lost")
        assert outcomes[1:] == ["fresh"] * (pooled + 2)
    finally:
        await own.dispose()


@pytest.mark.parametrize("dependency", ["connection", "transaction"])
async def test_a_terminated_asyncpg_connection_costs_at_most_one_503(
    engine: AsyncEngine, dependency: str
) -> None:
    # A pooled connection whose backend is gone is found by the request that uses it: a 503 +
    # Retry-After (never a 500, never a hang); the pool opens a new one for the next request.
    own = await create_pool(engine.url.render_as_string(hide_password=False), min_size=1)
    app = FastAPI()
    install_error_handlers(app)
    served = with_state(app, ServiceResources(pool=own))

    @app.get("/connection")
    async def on_connection(connection: ConnectionDep) -> int:
        return int(await connection.fetchval("SELECT pg_backend_pid()"))

    @app.get("/transaction")
    async def in_transaction(connection: TransactionDep) -> int:
        return int(await connection.fetchval("SELECT pg_backend_pid()"))

    transport = httpx.ASGITransport(app=served, raise_app_exceptions=False)
    try:
        async with own.acquire() as connection:
            old = connection.get_server_pid()
        server = await asyncpg.connect(
            asyncpg_dsn(engine.url.render_as_string(hide_password=False))
        )
        try:
            assert await server.fetchval("SELECT pg_terminate_backend($1)", old)
        finally:
            await server.close()
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            statuses = []
            for _ in range(4):
                response = await asyncio.wait_for(client.get(f"/{dependency}"), timeout=10)
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.headers["retry-after"] == "5"
                    assert response.headers["content-type"] == "application/problem+json"
                else:
                    assert response.json() != old
        assert statuses[0] in (200, 503)
        assert statuses[1:] == [200, 200, 200]
    finally:
        await own.close()


async def test_a_pool_for_an_unreachable_database_starts_and_answers_503() -> None:
    dead = await create_pool("postgresql://postgres@127.0.0.1:1/nowhere")
    app = FastAPI()
    install_error_handlers(app)
    served = with_state(app, ServiceResources(pool=dead))

    @app.get("/read")
    async def read(connection: ConnectionDep) -> int:
        return int(await connection.fetchval("SELECT 1"))

    transport = httpx.ASGITransport(app=served, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/read")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
    finally:
        await dead.close()


async def test_the_pool_opens_its_connections_up_front_and_keeps_them(
    engine: AsyncEngine,
) -> None:
    pool = await create_pool(engine.url.render_as_string(hide_password=False), min_size=3)
    try:
        assert pool.get_size() == 3
        assert pool.get_idle_size() == 3
    finally:
        await pool.close()


async def test_a_transaction_left_idle_is_ended_and_its_locks_freed(engine: AsyncEngine) -> None:
    """A process that froze inside a transaction (SIGSTOP, a long pause) holds its row locks
    only until the idle-in-transaction limit: another replica's write to the same row then goes
    through, and the frozen one finds its connection gone (503 on its side), not a commit."""
    url = engine.url.render_as_string(hide_password=False)
    pool = await create_pool(url, min_size=2, max_size=3, idle_in_transaction_timeout=0.3)
    try:
        async with pool.acquire() as connection:
            assert await connection.fetchval("SHOW idle_in_transaction_session_timeout") == "300ms"
            await connection.execute("INSERT INTO item VALUES ('locked') ON CONFLICT DO NOTHING")
        async with pool.acquire() as frozen:
            transaction = frozen.transaction()
            await transaction.start()
            await frozen.execute("UPDATE item SET name = name WHERE name = 'locked'")
            async with pool.acquire() as other:
                started = time.monotonic()
                # Without the limit this waits for the frozen transaction forever (timeout).
                await asyncio.wait_for(
                    other.execute("UPDATE item SET name = name WHERE name = 'locked'"), 10
                )
                waited = time.monotonic() - started
            assert 0.2 < waited < 5, waited
            # The server ended the session: whichever way asyncpg reports it (depending on when
            # the server's message is read), the request's error boundary calls it a lost
            # connection and answers 503 + Retry-After (`DatabaseConnectionLost`).
            with pytest.raises(Exception) as ended:
                await frozen.execute("SELECT 1")
            error = ended.value
            assert is_lost(frozen, error) or is_unavailable_database(error), repr(error)
        async with pool.acquire() as connection:  # the pool opens a fresh one in its place
            assert await connection.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
    relay_engine = create_engine(url, idle_in_transaction_timeout=2.5)  # the relay's, the same
    try:
        async with relay_engine.connect() as connection:
            shown = await connection.scalar(text("SHOW idle_in_transaction_session_timeout"))
            assert shown == "2500ms"
    finally:
        await relay_engine.dispose()
