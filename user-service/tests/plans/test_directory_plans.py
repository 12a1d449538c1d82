"""The directory's and `/auth/me`'s plans with 100,000 accounts (written by PostgreSQL itself,
then ANALYZEd): a page reads an index range or the matches of an index search, never every
account."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from taskflow_kit.db import async_database_url, asyncpg_dsn
from taskflow_kit.testing import explain_as_run, migrated_database
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
async def recorded(
    plans_database_url: str,
) -> AsyncIterator[tuple[AsyncSession, list[tuple[str, Any]]]]:
    """A session on the plans database that records every statement it runs."""
    engine = create_async_engine(async_database_url(plans_database_url))
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def record(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        statements.append((sql, params))

    async with async_sessionmaker(engine)() as session:
        yield session, statements
    await engine.dispose()


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
    recorded: tuple[AsyncSession, list[tuple[str, Any]]],
    plans_database_url: str,
    q: str | None,
    admin: bool,
    skip: int,
) -> None:
    session, statements = recorded
    users = await UserRepository(session).directory(
        q=q, skip=skip, limit=20, include_inactive=admin
    )
    assert q is None or all(
        q.lower() in f"{user.username} {user.full_name} {user.email if admin else ''}".lower()
        for user in users
    )
    # Planned for its term, in the request's transaction only (the database keeps one generic
    # plan for everything else, migration 0004_h16e).
    (per_call, _), (sql, params) = statements[-2:]
    assert per_call == "SET LOCAL plan_cache_mode = force_custom_plan"
    connection = await asyncpg.connect(asyncpg_dsn(plans_database_url))
    try:
        explained = await explain_as_run(connection, sql, list(params), per_call=True)
    finally:
        await connection.close()
    rows, sequential = rows_of_accounts(explained)
    assert not sequential, sql
    assert rows <= ROW_BUDGET + skip, (q, rows)


async def test_me_is_one_primary_key_lookup(
    recorded: tuple[AsyncSession, list[tuple[str, Any]]], plans_database_url: str
) -> None:
    session, statements = recorded
    user = await UserRepository(session).get(ACCOUNTS // 2)
    assert user is not None
    connection = await asyncpg.connect(asyncpg_dsn(plans_database_url))
    try:
        # The database's own settings: one cached generic plan (migration 0004_h16e), no JIT.
        settings = await connection.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN ('plan_cache_mode', 'jit')"
        )
        sql, params = statements[-1]
        explained = await explain_as_run(connection, sql, list(params), per_call=False)
    finally:
        await connection.close()
    assert dict(settings) == {"plan_cache_mode": "force_generic_plan", "jit": "off"}
    assert rows_of_accounts(explained) == (1, False)
