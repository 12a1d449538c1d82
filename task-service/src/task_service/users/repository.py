"""Queries on the user directory (`known_user`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from taskflow_kit.repository import RepositoryBase

from task_service.users.models import KnownUser


class KnownUserRepository(RepositoryBase[KnownUser]):
    model = KnownUser

    async def record(
        self,
        user_id: int,
        *,
        username: str | None,
        is_active: bool,
        deleted: bool,
        event_at: datetime,
    ) -> None:
        """Upsert the user as of `event_at`, unless a newer event is already recorded (events
        may arrive out of order after a retry)."""
        values = {
            "id": user_id,
            "username": username,
            "is_active": is_active,
            "deleted": deleted,
            "event_at": event_at,
        }
        statement = pg_insert(KnownUser).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[KnownUser.id],
            set_={key: statement.excluded[key] for key in values if key != "id"},
            where=KnownUser.event_at < statement.excluded.event_at,
        )
        await self.session.execute(statement)

    async def known_ids(self) -> list[int]:
        return list((await self.session.execute(select(KnownUser.id))).scalars())
