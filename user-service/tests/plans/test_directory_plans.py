"""The directory's and `/auth/me`'s plans with 100,000 accounts (written by PostgreSQL itself,
then ANALYZEd): a page reads an index range or the matches of an index search, never every
account."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from taskflow_kit.db import PLAN_PER_CALL, async_database_url, asyncpg_dsn, create_pool
from taskflow_kit.testing import Recording, explain_as_run, migrated_database, plans_of
from user_service.config import ALEMBIC_INI
from user_service.users.repository import UserRepository

ACCOUNTS = 100_000
# Every 7th account has a full name with "Miller"; one in 10,000 usernames starts with "zq".
# (A term shorter than 3 characters has no trigram: such a search reads every account.)
BULK_USERS = """
INSERT INTO user_account (email, username, full_name, hashed_password, is_active)
SELECT 'user' || g || '@example.com',
       CASE WHEN g % 10000 = 5 THEN 'zq' || g ELSE 'user' || g END,
       CASE WHEN g % 7 = 0 THEN 'Anna Miller ' || g ELSE 'Person ' || md5(g::text) END,
       'x', g % 50 <> 0
FROM generate_series(1, :accounts) AS g
"""
ROW_BUDGET = 2_000


@pytest.fixture(scope="module")
async def plans_database_url() -> AsyncIterator[str]:
    async with migrated_database("tf_user_plans", ALEMBIC_INI) as url:
        engine = create_async_engine(async_database_url(url))
        async with engine.begin() as connection:
            await connection.execute(text(BULK_USERS), {"accounts": ACCOUNTS})
        async with engine.connect() as connection:
            await connection.execute(text("COMMIT"))
            await connection.execute(text("VACUUM ANALYZE user_account"))
        await engine.dispose()
        yield url


@pytest.fixture
async def connection(plans_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the service's own pool (`create_pool`): the statements run as they do
    for a request, and its prepared statements say which plans they ran with."""
    pool = await create_pool(plans_database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            yield connection
    finally:
        await pool.close()


async def explained(plans_database_url: str, sql: str, args: list[Any], *, per_call: bool) -> str:
    """The plan `sql` runs with for `args` (`explain_as_run`), on a connection of its own."""
    connection = await asyncpg.connect(asyncpg_dsn(plans_database_url))
    try:
        return await explain_as_run(connection, sql, args, per_call=per_call)
    finally:
        await connection.close()


def rows_of_accounts(explained: str) -> tuple[int, bool]:
    """Rows of user_account the plan's scans read (kept and filtered out), and whether any
    scan was sequential."""
    rows, sequential = 0, False
    stack = [json.loads(explained)[0]["Plan"]]
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans", ()))
        if node.get("Relation Name") == "user_account":
            kept = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            rows += int(kept * node["Actual Loops"])
            sequential |= node["Node Type"] == "Seq Scan"
    return rows, sequential


@pytest.mark.parametrize(
    ("q", "admin", "skip"),
    [
        (None, False, 0),
        (None, False, 5_000),
        (None, True, 0),
        ("zq10", False, 0),
        ("miller", False, 0),
        ("user99@example", True, 0),
        ("nobody-has-this", False, 0),
    ],
)
async def test_directory_pages_read_an_index(
    connection: asyncpg.Connection,
    plans_database_url: str,
    q: str | None,
    admin: bool,
    skip: int,
) -> None:
    recording = Recording(connection)
    users = await UserRepository(recording).directory(  # type: ignore[arg-type]
        q=q, skip=skip, limit=20, include_inactive=admin
    )
    assert q is None or all(
        q.lower() in f"{user.username} {user.full_name} {user.email if admin else ''}".lower()
        for user in users
    )
    # Planned for its term (the database keeps one generic plan for everything else,
    # migration 0004_h16e): the request's connection, in no transaction, is set to plan per
    # call first, and the prepared statement ran with a custom plan, never the generic one.
    (setting, _), (sql, args) = recording.statements
    assert setting == f"SET {PLAN_PER_CALL}"
    assert await plans_of(connection, sql) == (0, 1)
    plan = await explained(plans_database_url, sql, list(args), per_call=True)
    rows, sequential = rows_of_accounts(plan)
    assert not sequential, sql
    assert rows <= ROW_BUDGET + skip, (q, rows)


async def test_me_is_one_primary_key_lookup(
    connection: asyncpg.Connection, plans_database_url: str
) -> None:
    recording = Recording(connection)
    user = await UserRepository(recording).get(ACCOUNTS // 2)  # type: ignore[arg-type]
    assert user is not None
    [(sql, args)] = recording.statements
    # The database's own settings: one cached generic plan (migration 0004_h16e), no JIT.
    settings = await connection.fetch(
        "SELECT name, setting FROM pg_settings WHERE name IN ('plan_cache_mode', 'jit')"
    )
    assert dict(settings) == {"plan_cache_mode": "force_generic_plan", "jit": "off"}
    assert await plans_of(connection, sql) == (1, 0)
    plan = await explained(plans_database_url, sql, list(args), per_call=False)
    assert rows_of_accounts(plan) == (1, False)


async def test_the_directory_is_planned_per_call_and_reads_by_id_are_not(
    connection: asyncpg.Connection,
) -> None:
    """Listings and lookups in turn on one pooled connection, as requests share it: every
    listing is planned for its term, every lookup keeps the cached generic plan, and the
    setting a listing makes (outside a transaction) does not outlive it into a lookup."""
    recording = Recording(connection)
    users = UserRepository(recording)  # type: ignore[arg-type]
    for _ in range(3):
        await users.directory(q="miller", skip=0, limit=20, include_inactive=False)
        await users.get(ACCOUNTS // 2)
        assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    listing, lookup = recording.statements[1][0], recording.statements[3][0]
    assert [sql for sql, _ in recording.statements] == 3 * [
        f"SET {PLAN_PER_CALL}",
        listing,
        "RESET plan_cache_mode",
        lookup,
    ]
    assert await plans_of(connection, listing) == (0, 3)
    assert await plans_of(connection, lookup) == (3, 0)
