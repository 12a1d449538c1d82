"""RefreshTokenRepository on PostgreSQL: a token is claimed once (also by racing
transactions), and revocations touch the families they name."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from fastapi import FastAPI
from user_service.auth.repository import RefreshTokenRepository
from user_service.users.repository import UserRepository

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture
def pool(app: FastAPI) -> asyncpg.Pool:
    return app.state.pool


@pytest.fixture
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as connection:
        yield connection


async def add_user(connection: asyncpg.Connection, username: str) -> int:
    user = await UserRepository(connection).insert(
        email=f"{username}@example.com",
        username=username,
        full_name=None,
        hashed_password="x",
    )
    return user.id


async def add_token(
    connection: asyncpg.Connection,
    user_id: int,
    *,
    family_id: uuid.UUID | None = None,
    expires_in: timedelta = timedelta(days=1),
) -> str:
    token_hash = uuid.uuid4().hex * 2
    await RefreshTokenRepository(connection).add(
        user_id=user_id,
        family_id=family_id or uuid.uuid4(),
        token_hash=token_hash,
        expires_at=datetime.now(UTC) + expires_in,
    )
    return token_hash


async def test_a_token_is_claimed_once(connection: asyncpg.Connection) -> None:
    tokens = RefreshTokenRepository(connection)
    alice = await add_user(connection, "alice")
    family = uuid.uuid4()
    token_hash = await add_token(connection, alice, family_id=family)

    claimed = await tokens.claim(token_hash)

    assert claimed is not None
    assert (claimed.user_id, claimed.family_id, claimed.token_hash) == (alice, family, token_hash)
    assert claimed.used_at is not None
    assert claimed.revoked_at is None
    assert await tokens.claim(token_hash) is None
    assert await tokens.lock_by_hash(token_hash) == claimed
    assert await tokens.claim("f" * 64) is None


async def test_expired_and_revoked_tokens_cannot_be_claimed(
    connection: asyncpg.Connection,
) -> None:
    tokens = RefreshTokenRepository(connection)
    alice = await add_user(connection, "alice")
    expired = await add_token(connection, alice, expires_in=timedelta(seconds=-1))
    family = uuid.uuid4()
    revoked = await add_token(connection, alice, family_id=family)
    assert await tokens.revoke_family(family) == 1

    assert await tokens.claim(expired) is None
    assert await tokens.claim(revoked) is None


async def test_of_two_racing_claims_one_wins_and_the_other_finds_it_used(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as first, pool.acquire() as second:
        token_hash = await add_token(first, await add_user(first, "alice"))
        winning = first.transaction()
        await winning.start()
        try:
            assert await RefreshTokenRepository(first).claim(token_hash) is not None

            async def claim_in_second() -> object:
                async with second.transaction():
                    return await RefreshTokenRepository(second).claim(token_hash)

            racing = asyncio.create_task(claim_in_second())
            await asyncio.sleep(0.2)
            assert not racing.done()  # waits for the first claim's row lock
            await winning.commit()
        finally:
            if first.is_in_transaction():
                await winning.rollback()
        assert await asyncio.wait_for(racing, 10) is None


async def test_revocations_touch_the_families_they_name(connection: asyncpg.Connection) -> None:
    tokens = RefreshTokenRepository(connection)
    alice, bob = await add_user(connection, "alice"), await add_user(connection, "bob")
    kept, phone, laptop = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for family in (kept, phone, phone, laptop):
        await add_token(connection, alice, family_id=family)
    bobs = await add_token(connection, bob)

    # Another user's session is not the caller's to end.
    assert await tokens.revoke_family(phone, user_id=bob) == 0
    assert await tokens.revoke_family(phone, user_id=alice) == 2
    assert await tokens.revoke_family(phone) == 0  # already revoked
    assert await tokens.revoke_other_families(alice, keep=kept) == [laptop]
    assert await tokens.revoke_other_families(alice, keep=None) == [kept]
    assert await tokens.revoke_all_for_user(alice) == 0
    assert await tokens.revoke_all_for_user(bob) == 1
    revoked = await tokens.lock_by_hash(bobs)
    assert revoked is not None
    assert revoked.revoked_at is not None
