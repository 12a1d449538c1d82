"""UserService against the database, below HTTP: the unique index decides real races."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from taskflow_kit.testing import until_a_lock_is_awaited
from user_service.models import User
from user_service.passwords import PasswordHasher
from user_service.users.errors import EmailTaken, UsernameTaken
from user_service.users.schemas import UserCreate

PASSWORD = "correct horse battery staple"


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
    outbox = app.state.outbox

    async def register_in_its_transaction(connection: asyncpg.Connection) -> object:
        async with connection.transaction():
            return await UserService.for_connection(
                connection, outbox=outbox, hasher=hasher
            ).register(UserCreate(**second, password=PASSWORD))

    async with app.state.pool.acquire() as first, app.state.pool.acquire() as other:
        first_transaction = first.transaction()
        await first_transaction.start()
        racing: asyncio.Task[object] | None = None
        try:
            await UserService.for_connection(first, outbox=outbox, hasher=hasher).register(
                UserCreate(email="alice@example.com", username="alice", password=PASSWORD)
            )  # inserted, not committed: invisible to the other transaction's pre-check
            racing = asyncio.create_task(register_in_its_transaction(other))
            await until_a_lock_is_awaited(app.state.pool)  # its INSERT waits on the index entry
            await first_transaction.commit()

            with pytest.raises(error) as raised:
                await racing
            assert isinstance(raised.value.__cause__, asyncpg.UniqueViolationError)
        finally:
            if first.is_in_transaction():  # the commit was not reached: free the racer
                await first_transaction.rollback()
            if racing is not None and not racing.done():
                racing.cancel()
                with contextlib.suppress(BaseException):
                    await racing

    async with app.state.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(User)) == 1
