"""Alembic helpers: one `env.py` body for every service, and programmatic upgrades."""

from __future__ import annotations

import asyncio
import random
import re
import time
import zlib
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from taskflow_kit.db import async_database_url, asyncpg_dsn
from taskflow_kit.dberrors import causes

logger = structlog.get_logger("taskflow.migrations")

# What a database that is starting, restarting or not yet resolvable raises. Anything else
# (a wrong password, a failing migration) is a fault that waiting will not cure.
_UNAVAILABLE = (
    OSError,  # refused, unreachable, the host name not (yet) in DNS, timeouts
    asyncpg.CannotConnectNowError,  # "the database system is starting up / shutting down"
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)


_SETTING_VALUE = re.compile(r"[A-Za-z0-9_.]+")  # a word or a number: written unquoted


def alter_database(**settings: str | None) -> str:
    """SQL setting this database's defaults for new sessions (`name=value`) or putting them back
    (`name=None`), for a migration to `op.execute`. ALTER DATABASE wants the database's name,
    which a migration does not know: a DO block finds it (`current_database()`)."""
    lines = []
    for name, value in settings.items():
        if not name.isidentifier() or not (value is None or _SETTING_VALUE.fullmatch(value)):
            raise ValueError(f"not a setting this helper writes: {name}={value!r}")
        change = f"RESET {name}" if value is None else f"SET {name} = {value}"
        lines.append(f"    EXECUTE format('ALTER DATABASE %I {change}', current_database());\n")
    return "DO $$\nBEGIN\n" + "".join(lines) + "END\n$$"


def run_env(context: Any, metadata: MetaData, *, default_url: str) -> None:
    """The whole of a service's `migrations/env.py`: online migrations over asyncpg.

    An advisory lock makes concurrent starts (several replicas) run migrations one at a time.
    """
    url = context.config.attributes.get("database_url") or default_url
    if context.is_offline_mode():
        context.configure(url=async_database_url(url), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Connection) -> None:
        lock_id = zlib.crc32(str(metadata.tables.keys()).encode())
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
        try:
            context.configure(connection=connection, target_metadata=metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})

    async def run_async() -> None:
        engine = create_async_engine(async_database_url(url), poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run_async())


def alembic_config(alembic_ini: Path, database_url: str) -> Config:
    config = Config(str(alembic_ini))
    config.set_main_option("script_location", str(alembic_ini.parent / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(alembic_ini: Path, database_url: str) -> None:
    """Apply every migration (blocking; from async code call it in a thread)."""
    command.upgrade(alembic_config(alembic_ini, database_url), "head")


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it is missing. True when it was created."""
    name = make_url(url).database
    if not name:
        raise ValueError("the database URL names no database")
    connection = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await connection.close()


def database_unavailable(error: BaseException) -> bool:
    """True when `error` (or what it wraps) says the database cannot be reached yet."""
    return any(isinstance(cause, _UNAVAILABLE) for cause in causes(error))


async def prepare_database(
    alembic_ini: Path,
    database_url: str,
    *,
    wait_seconds: float = 60.0,
    first_delay: float = 0.5,
    max_delay: float = 5.0,
) -> None:
    """Create the database if it is missing and migrate it to head: what a service does at start
    when `MIGRATE_ON_START` is set (concurrent starts are serialised by `run_env`'s lock).

    A database that cannot be reached yet (starting, restarting, its name not yet in DNS) is
    retried with capped exponential backoff and jitter for up to `wait_seconds`, each attempt
    logged; then the last error is raised and the process exits for its supervisor to restart.
    """
    deadline = time.monotonic() + wait_seconds
    delay = first_delay
    attempt = 1
    while True:
        try:
            await ensure_database(database_url)
            await asyncio.to_thread(upgrade_to_head, alembic_ini, database_url)
        except Exception as error:
            remaining = deadline - time.monotonic()
            if not database_unavailable(error) or remaining <= 0:
                raise
            pause = min(delay * random.uniform(0.5, 1.0), remaining)
            logger.warning(
                "database unavailable at start-up, retrying",
                attempt=attempt,
                retry_in_seconds=round(pause, 2),
                error=f"{type(error).__name__}: {error}",
            )
            await asyncio.sleep(pause)
            delay = min(delay * 2, max_delay)
            attempt += 1
        else:
            if attempt > 1:
                logger.info("database reached", attempts=attempt)
            return


async def drop_database(url: str) -> None:
    name = make_url(url).database
    connection = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
