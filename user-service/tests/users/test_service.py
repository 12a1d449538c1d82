"""UserService against the database, below HTTP: the unique index decides real races."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from user_service.models import User
from user_service.passwords import PasswordHasher
from user_service.users.errors import EmailTaken, UsernameTaken
from user_service.users.schemas import UserCreate

PASSWORD = "correct horse battery staple"


async def wait_until_blocked_on_a_lock(app: FastAPI, *, timeout: float = 10.0) -> None:
    """Wait until some backend of this database waits on a lock (the racing insert)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with app.state.engine.connect() as connection:
        async with asyncio.timeout(timeout):
            while True:
                waiting = await connection.scalar(query)
                # pg_stat_activity is a snapshot per transaction: end it to see changes.
                await connection.rollback()
                if waiting:
                    return
                await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("second", "error"),
    [
        ({"email": "ALICE@example.com", "username": "other"}, EmailTaken),
        ({"email": "other@example.com", "username": "ALICE"}, UsernameTaken),
    ],
)
async def test_a_race_past_the_pre_check_is_a_conflict_from_the_index(
    app: FastAPI, second: dict, error: type[Exception]
) -> None:
    from user_service.users.service import UserService

    hasher = PasswordHasher(rounds=4)
    first_session = app.state.sessionmaker()
    second_session = app.state.sessionmaker()
    racing: asyncio.Task[object] | None = None
    try:
        outbox = app.state.outbox
        await UserService.for_session(first_session, outbox=outbox, hasher=hasher).register(
            UserCreate(email="alice@example.com", username="alice", password=PASSWORD)
        )  # flushed, not committed: invisible to the other session's pre-check
        racing = asyncio.create_task(
            UserService.for_session(second_session, outbox=outbox, hasher=hasher).register(
                UserCreate(**second, password=PASSWORD)
            )
        )
        await wait_until_blocked_on_a_lock(app)  # its INSERT waits on the index entry
        await first_session.commit()

        with pytest.raises(error) as raised:
            await racing
        assert isinstance(raised.value.__cause__, IntegrityError)
    finally:
        await first_session.close()  # a rollback if the commit was not reached: frees the racer
        if racing is not None and not racing.done():
            racing.cancel()
            with contextlib.suppress(BaseException):
                await racing
        await second_session.close()

    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1
