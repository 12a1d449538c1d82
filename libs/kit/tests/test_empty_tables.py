"""`empty_tables`, the services' per-test reset, on a real PostgreSQL: every table of the
metadata empty, identities restarted, no trigger run, a table outside the metadata kept, small
tables emptied without an exclusive lock and large ones truncated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Identity,
    Integer,
    MetaData,
    Table,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from taskflow_kit.db import create_engine
from taskflow_kit.migrations import drop_database, ensure_database
from taskflow_kit.testing import (
    TRUNCATE_FROM_ROWS,
    empty_tables,
    test_database_server_url,
    unique_name,
)

METADATA = MetaData()
Table("parent", METADATA, Column("id", BigInteger, Identity(), primary_key=True))
Table(
    "child",
    METADATA,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("parent_id", ForeignKey("parent.id", ondelete="CASCADE"), nullable=False),
)
# Written only by `parent`'s triggers, like task-service's `task_tally` by `task`'s.
Table(
    "tally",
    METADATA,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("parents", Integer, nullable=False),
)
Table("bulk", METADATA, Column("id", BigInteger, Identity(), primary_key=True))
TABLES = ("parent", "child", "tally", "bulk")

COUNTING_TRIGGERS = (
    """CREATE FUNCTION count_parents() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO tally (parents) SELECT count(*) FROM new_rows;
        ELSE
            INSERT INTO tally (parents) SELECT -count(*) FROM old_rows;
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER parent_inserted AFTER INSERT ON parent REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION count_parents()",
    "CREATE TRIGGER parent_deleted AFTER DELETE ON parent REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION count_parents()",
)


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    url = (
        make_url(test_database_server_url())
        .set(database=unique_name("tf_kit_reset"))
        .render_as_string(hide_password=False)
    )
    await ensure_database(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(METADATA.create_all)
            # Outside the metadata, as `alembic_version` is.
            await connection.execute(text("CREATE TABLE kept (name text PRIMARY KEY)"))
            await connection.execute(text("INSERT INTO kept VALUES ('head')"))
            for statement in COUNTING_TRIGGERS:
                await connection.execute(text(statement))
        yield engine
    finally:
        await engine.dispose()
        await drop_database(url)


async def fill(engine: AsyncEngine, *, bulk: int = 3) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO parent SELECT FROM generate_series(1, 3)"))
        await connection.execute(text("INSERT INTO child (parent_id) SELECT id FROM parent"))
        await connection.execute(
            text("INSERT INTO bulk SELECT FROM generate_series(1, :n)"), {"n": bulk}
        )


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            name: (await connection.execute(text(f"SELECT count(*) FROM {name}"))).scalar_one()
            for name in (*TABLES, "kept")
        }


async def file_of(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as connection:
        query = text("SELECT pg_relation_filenode(CAST(:name AS regclass))")
        return int((await connection.execute(query, {"name": name})).scalar_one())


@pytest.fixture(autouse=True)
async def emptied(engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    await empty_tables(engine, METADATA)


async def test_every_table_is_emptied_without_its_triggers_and_identities_restart(
    engine: AsyncEngine,
) -> None:
    await fill(engine)
    # A table empty again by the end of a test has still used its identity.
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO bulk DEFAULT VALUES"))
        await connection.execute(text("DELETE FROM bulk"))
    assert (await counts(engine))["tally"] == 1

    await empty_tables(engine, METADATA)

    assert await counts(engine) == {"parent": 0, "child": 0, "tally": 0, "bulk": 0, "kept": 1}
    await fill(engine)
    async with engine.connect() as connection:
        firsts = [
            (await connection.execute(text(f"SELECT min(id) FROM {name}"))).scalar_one()
            for name in TABLES
        ]
    assert firsts == [1, 1, 1, 1]


async def test_a_reader_holding_a_small_table_does_not_hold_up_the_reset(
    engine: AsyncEngine,
) -> None:
    """TRUNCATE waits for every transaction that has read the table; DELETE does not."""
    await fill(engine)
    parent_file = await file_of(engine, "parent")
    async with engine.connect() as reader:
        await reader.execute(text("SELECT count(*) FROM parent"))  # its transaction stays open
        await asyncio.wait_for(empty_tables(engine, METADATA), timeout=10)
        await reader.rollback()
    assert await counts(engine) == {"parent": 0, "child": 0, "tally": 0, "bulk": 0, "kept": 1}
    assert await file_of(engine, "parent") == parent_file


async def test_a_large_table_is_truncated(engine: AsyncEngine) -> None:
    """A large table gets a new, empty file: no dead rows, nothing of its old contents for the
    planner (its relpages and reltuples reset, as after every TRUNCATE)."""
    await fill(engine, bulk=TRUNCATE_FROM_ROWS)
    bulk_file, parent_file = await file_of(engine, "bulk"), await file_of(engine, "parent")

    await empty_tables(engine, METADATA)

    assert await file_of(engine, "bulk") != bulk_file
    assert await file_of(engine, "parent") == parent_file
    assert await counts(engine) == {"parent": 0, "child": 0, "tally": 0, "bulk": 0, "kept": 1}
