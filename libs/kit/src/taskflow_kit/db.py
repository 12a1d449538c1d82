"""Async engine, session factory and the request-scoped session that commits at the edge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from taskflow_kit.errors import ProblemError
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
    url: str, *, pool_size: int = 10, max_overflow: int = 10, pool_recycle: float = 300
) -> AsyncEngine:
    """The service's engine. No pre-ping per checkout (it cost three round trips per request:
    `BEGIN; SELECT; ROLLBACK`); instead connections are replaced after `pool_recycle` seconds,
    and one found dead in use (database restarted, backend terminated) fails its request with a
    disconnect error, which SQLAlchemy answers by invalidating that connection and every other
    one pooled before it, and the error handlers by a 503 + Retry-After. The next request gets
    a fresh connection.
    """
    return _create_async_engine(
        async_database_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,
        pool_recycle=pool_recycle,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


AfterCommit = Callable[[], Awaitable[None]]


def after_commit(session: AsyncSession, hook: AfterCommit) -> None:
    """Run `hook` once after this session's transaction commits (`get_session` runs them)."""
    hooks: list[AfterCommit] = session.info.setdefault("after_commit", [])
    if hook not in hooks:
        hooks.append(hook)


async def run_after_commit(session: AsyncSession) -> None:
    for hook in session.info.pop("after_commit", []):
        try:
            await hook()
        except Exception:  # the change is committed: a hook failing must not turn it into an error
            logger.exception("after_commit_hook_failed")


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: commit when the endpoint returns, roll back if it raises.

    Services only `flush()`; this is the single place that commits. After the commit it runs
    the session's after-commit hooks (the outbox relay's prompt publish). It is declared with
    `scope="function"` so the commit happens before the response is sent: a client never
    reads a 2xx for a write that then fails to commit.

    An error raised with `commit` set (see `taskflow_kit.errors.ProblemError`) commits what was
    flushed and is still answered as that error.
    """
    sessionmaker = resources(request).need_sessionmaker()
    async with sessionmaker() as session:
        try:
            yield session
        except ProblemError as exc:
            if exc.commit:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()
            await run_after_commit(session)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def ping_database(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
