"""The events user-service publishes (`user.*`), written to its outbox with the change.

- `user.registered`, `user.updated` {"user": profile and flags, "revoke_tokens": bool}: consumers
  keep a directory of users; `revoke_tokens` is true when access tokens issued before the event
  must stop working (deactivated, admin rights granted or revoked).
- `user.deleted` {"user_id"}: every token of the user is void; task-service removes their tasks.
- `user.logged_out` {"user_id", "session_id", "reason"}: that login session's tokens are void.
- `user.sessions_revoked` {"user_id", "reason"}: every session of the user ends (password change).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from taskflow_kit.events import USER_STREAM
from taskflow_kit.outbox import Outbox, outbox_table

from user_service.database import Base
from user_service.users.repository import UserRow

PRODUCER = "user-service"
OUTBOX = outbox_table(Base.metadata)


def make_outbox() -> Outbox:
    return Outbox(OUTBOX, producer=PRODUCER, stream=USER_STREAM)


def user_data(user: UserRow) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "full_name": user.full_name,
        "is_active": user.is_active,
        "is_superuser": user.is_superuser,
    }


class UserEvents:
    """Records `user.*` events in the caller's transaction."""

    def __init__(self, connection: asyncpg.Connection, outbox: Outbox) -> None:
        self.connection = connection
        self.outbox = outbox

    async def registered(self, user: UserRow) -> None:
        await self.outbox.add_on(
            self.connection, "user.registered", user.id, {"user": user_data(user)}
        )

    async def updated(self, user: UserRow, *, revoke_tokens: bool) -> None:
        await self.outbox.add_on(
            self.connection,
            "user.updated",
            user.id,
            {"user": user_data(user), "revoke_tokens": revoke_tokens},
        )

    async def deleted(self, user_id: int) -> None:
        await self.outbox.add_on(self.connection, "user.deleted", user_id, {"user_id": user_id})

    async def logged_out(self, user_id: int, session_id: str, *, reason: str) -> None:
        await self.outbox.add_on(
            self.connection,
            "user.logged_out",
            user_id,
            {"user_id": user_id, "session_id": session_id, "reason": reason},
        )

    async def sessions_revoked(self, user_id: int, *, reason: str) -> None:
        await self.outbox.add_on(
            self.connection,
            "user.sessions_revoked",
            user_id,
            {"user_id": user_id, "reason": reason},
        )
