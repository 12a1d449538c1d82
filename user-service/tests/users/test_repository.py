"""UserRepository on PostgreSQL: case-insensitive lookups, the unique indexes' violations, the
share lock a token is issued under, and what an update writes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from fastapi import FastAPI
from user_service.users.models import EMAIL_UNIQUE_INDEX, USERNAME_UNIQUE_INDEX
from user_service.users.repository import UserRepository, UserRow

HASH = "$2b$04$" + "x" * 53


@pytest.fixture
async def pool(app: FastAPI) -> asyncpg.Pool:
    return app.state.pool


@pytest.fixture
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as connection:
        yield connection


async def add_user(
    connection: asyncpg.Connection, *, username: str = "alice", email: str | None = None
) -> UserRow:
    return await UserRepository(connection).insert(
        email=email or f"{username}@example.com",
        username=username,
        full_name=None,
        hashed_password=HASH,
    )


async def test_an_inserted_account_is_active_and_not_an_administrator(
    connection: asyncpg.Connection,
) -> None:
    user = await add_user(connection, username="alice")

    assert (user.username, user.email, user.is_active, user.is_superuser) == (
        "alice",
        "alice@example.com",
        True,
        False,
    )
    assert user.created_at == user.updated_at
    assert await UserRepository(connection).get(user.id) == user


@pytest.mark.parametrize(
    ("second", "index"),
    [
        ({"username": "other", "email": "ALICE@Example.com"}, EMAIL_UNIQUE_INDEX),
        ({"username": "ALICE", "email": "other@example.com"}, USERNAME_UNIQUE_INDEX),
    ],
)
async def test_a_taken_email_or_username_is_a_unique_violation_naming_its_index(
    connection: asyncpg.Connection, second: dict[str, str], index: str
) -> None:
    await add_user(connection, username="alice")

    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await add_user(connection, **second)

    assert raised.value.constraint_name == index


async def test_logins_and_taken_fields_ignore_case(connection: asyncpg.Connection) -> None:
    users = UserRepository(connection)
    alice = await add_user(connection, username="Alice", email="Alice@Example.com")

    assert await users.get_by_login("ALICE") == alice
    assert await users.get_by_login("alice@example.COM") == alice
    assert await users.get_by_login("bob") is None
    assert await users.taken_fields(email="ALICE@example.com", username="bob") == (True, False)
    assert await users.taken_fields(email="bob@example.com", username="aLiCe") == (False, True)
    assert await users.taken_fields(email=None, username=None) == (False, False)
    # Their own email and username are not taken from themselves.
    assert await users.taken_fields(
        email="alice@example.com", username="alice", exclude_id=alice.id
    ) == (False, False)


async def test_an_update_writes_only_its_columns_and_the_time(
    connection: asyncpg.Connection,
) -> None:
    users = UserRepository(connection)
    alice = await add_user(connection, username="alice")

    changed = await users.update(alice.id, {"full_name": "Alice A.", "is_superuser": True})

    assert changed is not None
    assert (changed.full_name, changed.is_superuser) == ("Alice A.", True)
    assert (changed.username, changed.email, changed.hashed_password, changed.is_active) == (
        alice.username,
        alice.email,
        alice.hashed_password,
        alice.is_active,
    )
    assert changed.updated_at > alice.updated_at
    assert await users.get(alice.id) == changed
    assert await users.update(alice.id + 1000, {"full_name": "nobody"}) is None
    with pytest.raises(ValueError, match="id"):
        await users.update(alice.id, {"id": 5})


async def test_a_share_locked_read_holds_off_a_change_until_its_transaction_ends(
    pool: asyncpg.Pool,
) -> None:
    """A demotion or deactivation waits for a transaction that issues a token from
    `get_for_share`, so the change's revocation event is younger than the token; a plain read
    holds nothing."""
    deactivate = "UPDATE user_account SET is_active = false WHERE id = $1"
    async with pool.acquire() as reader, pool.acquire() as writer:
        alice = await add_user(reader, username="alice")

        async def deactivate_within(timeout: str) -> None:
            change = writer.transaction()
            await change.start()
            try:
                await writer.execute(f"SET LOCAL lock_timeout = '{timeout}'")
                await writer.execute(deactivate, alice.id)
            finally:
                await change.rollback()

        async with reader.transaction():
            assert await UserRepository(reader).get(alice.id) == alice
            await deactivate_within("5s")  # a plain read holds nothing

        async with reader.transaction():
            assert await UserRepository(reader).get_for_share(alice.id) == alice
            with pytest.raises(asyncpg.LockNotAvailableError):
                await deactivate_within("200ms")

        # The share lock ended with its transaction.
        await writer.execute(deactivate, alice.id)
        deactivated = await UserRepository(reader).get_for_share(alice.id)
        assert deactivated is not None
        assert deactivated.is_active is False
