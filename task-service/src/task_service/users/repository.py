"""Queries on the user directory (`known_user`), on asyncpg like every task-service query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import BigInteger, bindparam, select
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from taskflow_kit.db import compile_statement

from task_service.users.models import KnownUser

USER_ID = bindparam("user_id", type_=BigInteger)


def _record_statement() -> Insert:
    statement = pg_insert(KnownUser).values(
        id=USER_ID,
        username=bindparam("username"),
        is_active=bindparam("is_active"),
        deleted=bindparam("deleted"),
        event_at=bindparam("event_at"),
    )
    return statement.on_conflict_do_update(
        index_elements=[KnownUser.id],
        set_={
            name: statement.excluded[name]
            for name in ("username", "is_active", "deleted", "event_at")
        },
        # Events may arrive out of order after a retry: an older one never overwrites a newer.
        where=KnownUser.event_at < statement.excluded.event_at,
    )


_RECORD = compile_statement(_record_statement())
_GET = compile_statement(
    select(KnownUser.is_active, KnownUser.deleted, KnownUser.event_at).where(
        KnownUser.id == USER_ID
    )
)


@dataclass(frozen=True, slots=True)
class KnownUserState:
    """A user as the latest `user.*` event described them."""

    is_active: bool
    deleted: bool
    event_at: datetime


class KnownUserRepository:
    """The directory on one asyncpg connection."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def get(self, user_id: int) -> KnownUserState | None:
        row = await _GET.fetchrow(self.connection, user_id=user_id)
        return None if row is None else KnownUserState(row[0], row[1], row[2])

    async def record(
        self,
        user_id: int,
        *,
        username: str | None,
        is_active: bool,
        deleted: bool,
        event_at: datetime,
    ) -> None:
        """Upsert the user as of `event_at`, unless a newer event is already recorded."""
        await _RECORD.execute(
            self.connection,
            user_id=user_id,
            username=username,
            is_active=is_active,
            deleted=deleted,
            event_at=event_at,
        )
