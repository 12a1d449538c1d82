"""Events task-service consumes: user-service's `user.*` (consumer group `task-service`).

- `user.registered` / `user.updated` keep the directory of known users (assignment checks answer
  from it, with no call to user-service);
- `user.updated` with the account deactivated unassigns the project tasks assigned to them
  (their memberships stay; docs/decisions.md §21);
- `user.deleted` marks the user deleted, ends their project memberships (a project they owned
  passes to its earliest admin or member, or is deleted when nobody is left), unassigns the
  tasks assigned to them and deletes the personal tasks they own (the account is gone for good;
  see docs/decisions.md), publishing the `task.*` / `project.*` event of each change.

Each event is applied in one transaction together with its id in `processed_event`, so a
redelivered event changes nothing (exactly once in effect).
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from taskflow_kit.consumer import DuplicateEvent
from taskflow_kit.events import Event
from taskflow_kit.outbox import Outbox
from taskflow_kit.processed import claim_event, processed_event_table, prune_processed
from taskflow_kit.resilience import ResilientClient

from task_service.database import Base
from task_service.projects.service import ProjectService
from task_service.tasks.service import TaskService
from task_service.users.repository import KnownUserRepository


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, in the session's transaction (which the
    statement `claim_event` ran has begun): the repositories run on it, so the change, its
    events and the processed-event id commit together."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


CONSUMER_GROUP = "task-service"
PROCESSED = processed_event_table(Base.metadata)
# Applied event ids are kept a week: far longer than an event can be redelivered.
PROCESSED_RETENTION_SECONDS = 7 * 24 * 3600.0


class UserEventHandler:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        outbox: Outbox,
        user_client: ResilientClient,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.user_client = user_client

    async def __call__(self, event: Event) -> None:
        async with self.sessionmaker() as session, session.begin():
            if not await claim_event(session, PROCESSED, CONSUMER_GROUP, event):
                raise DuplicateEvent(event.id)
            await self.apply(session, event)

    async def prune(self) -> None:
        async with self.sessionmaker() as session, session.begin():
            await prune_processed(session, PROCESSED, older_than=PROCESSED_RETENTION_SECONDS)

    async def apply(self, session: AsyncSession, event: Event) -> None:
        connection = await driver_connection(session)
        known = KnownUserRepository(connection)
        if event.type in ("user.registered", "user.updated"):
            user = event.data["user"]
            await known.record(
                int(user["id"]),
                username=user.get("username"),
                is_active=bool(user.get("is_active", True)),
                deleted=False,
                event_at=event.occurred_at,
            )
            if event.type == "user.updated" and user.get("is_active") is False:
                projects = ProjectService(
                    connection, user_client=self.user_client, outbox=self.outbox
                )
                await projects.deactivated(int(user["id"]))
        elif event.type == "user.deleted":
            user_id = int(event.data["user_id"])
            await known.record(
                user_id, username=None, is_active=False, deleted=True, event_at=event.occurred_at
            )
            projects = ProjectService(connection, user_client=self.user_client, outbox=self.outbox)
            await projects.remove_user(user_id)
            tasks = TaskService(connection, user_client=self.user_client, outbox=self.outbox)
            await tasks.remove_user(user_id)
