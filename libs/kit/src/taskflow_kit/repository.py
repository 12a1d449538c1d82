"""The base every repository builds on: it holds the request's session and only flushes.

A repository is the one place a service's queries live. Its writes `flush()` so that database
errors surface inside the service call; the request's session dependency
(`taskflow_kit.db.get_session`) is the single place that commits.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

ModelT = TypeVar("ModelT")


def like_pattern(term: str) -> str:
    """A pattern for `ILIKE ... ESCAPE '\\'` matching `term` anywhere, its wildcards literal."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class RepositoryBase(Generic[ModelT]):
    """Session holder with the writes every repository shares; subclasses set `model`."""

    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, ident: Any) -> ModelT | None:
        """The row with primary key `ident`, from the session's identity map when loaded."""
        found: ModelT | None = await self.session.get(self.model, ident)
        return found

    async def add(self, instance: ModelT) -> ModelT:
        """Insert `instance` and flush, so its generated columns (id, defaults) are loaded."""
        self.session.add(instance)
        await self.session.flush()
        return instance

    async def flush(self) -> None:
        """Write the changes made to loaded instances."""
        await self.session.flush()

    async def delete(self, instance: ModelT) -> None:
        """Delete `instance` and flush."""
        await self.session.delete(instance)
        await self.session.flush()
