"""The password hasher: bcrypt cost, long Unicode passwords, and never blocking the loop."""

from __future__ import annotations

import asyncio
import time

from user_service.config import Settings
from user_service.passwords import PasswordHasher


def test_production_cost_is_12() -> None:
    assert Settings.model_fields["bcrypt_rounds"].default == 12


async def test_hash_uses_the_configured_cost_and_verifies() -> None:
    hasher = PasswordHasher(rounds=12)
    hashed = await hasher.hash("ä" * 128)
    assert hashed.startswith("$2b$12$")
    assert await hasher.verify("ä" * 128, hashed)
    assert not await hasher.verify("ä" * 127 + "a", hashed)
    assert not hasher.needs_rehash(hashed)
    assert PasswordHasher(rounds=4).needs_rehash(hashed)


async def test_hashing_does_not_block_the_event_loop() -> None:
    hasher = PasswordHasher(rounds=12)  # ~0.2 s of CPU per hash
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    await asyncio.gather(hasher.hash("a password"), hasher.hash("another one"))
    elapsed = time.perf_counter() - started
    done.set()
    await ticking

    # Had bcrypt run on the loop, the ticker could not have run while it hashed.
    assert elapsed > 0.05
    assert ticks >= 5


async def test_surrogates_at_login_do_not_raise() -> None:
    hasher = PasswordHasher(rounds=4)
    hashed = await hasher.hash("a fine password")
    assert not await hasher.verify("\ud800" * 20, hashed)
    await hasher.verify_dummy("\udfff")


async def test_a_malformed_stored_hash_never_matches() -> None:
    assert not await PasswordHasher(rounds=4).verify("anything-at-all", "not-a-bcrypt-hash")
