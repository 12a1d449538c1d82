"""Failed logins are throttled per account and per client address; successes never are."""

from __future__ import annotations

import asyncio
import socket

import httpx

PASSWORD = "correct horse battery staple"


async def login(
    client: httpx.AsyncClient, username: str, password: str, *, address: str | None = None
) -> httpx.Response:
    # As the gateway forwards it: whatever the client sent, then the address the gateway saw.
    headers = {"X-Forwarded-For": f"6.6.6.6, {address}"} if address else {}
    return await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}, headers=headers
    )


async def test_failures_at_one_address_do_not_lock_the_owner_out(
    client: httpx.AsyncClient, api
) -> None:
    """Five wrong guesses from an attacker's address used to lock the account everywhere for
    15 minutes; now only that address waits, and only a second."""
    await api.register(username="alice")

    failures = [await login(client, "alice", f"guess-{n}", address="10.1.0.1") for n in range(5)]
    attacker = await login(client, "alice", f"guess-{5}", address="10.1.0.1")
    owner = await login(client, "alice", PASSWORD, address="10.9.9.9")

    assert [r.status_code for r in failures] == [401] * 5
    assert attacker.status_code == 429
    assert attacker.headers["content-type"] == "application/problem+json"
    assert int(attacker.headers["retry-after"]) <= 2  # a growing delay, not a 15-minute lock
    assert owner.status_code == 200


async def test_the_delay_doubles_with_every_further_failure(make_api) -> None:
    async with make_api(login_failures_per_pair=1) as api:
        await api.register(username="alice")
        throttle = api.app.state.login_throttle
        retry_afters = []
        for n in range(3):
            failed = await login(api.client, "alice", f"guess-{n}", address="10.3.0.1")
            refused = await login(api.client, "alice", PASSWORD, address="10.3.0.1")
            assert (failed.status_code, refused.status_code) == (401, 429)
            retry_afters.append(int(refused.headers["retry-after"]))
            # Let the delay pass without sleeping: end it in Redis (the count stays).
            async for key in throttle.redis.scan_iter(match=f"{throttle.prefix}login:pair:*"):
                await throttle.redis.hdel(key, "until")
        after_the_delay = await login(api.client, "alice", PASSWORD, address="10.3.0.1")

    assert retry_afters == [1, 2, 4]
    assert after_the_delay.status_code == 200


async def test_many_failures_behind_one_address_do_not_lock_out_its_known_users(
    make_api,
) -> None:
    """50 bad logins from one proxy address used to lock every login from it; people who have
    signed in from there before are not delayed, strangers only by a growing delay."""
    async with make_api(login_failures_per_address=50, login_failures_per_account=1000) as api:
        await api.register(username="bob")
        assert (await login(api.client, "bob", PASSWORD, address="192.0.2.50")).status_code == 200
        for n in range(50):
            failed = await login(api.client, f"user{n}", "nope-nope", address="192.0.2.50")
            assert failed.status_code == 401
        bob = await login(api.client, "bob", PASSWORD, address="192.0.2.50")
        stranger = await login(api.client, "user99", "nope-nope", address="192.0.2.50")

    assert bob.status_code == 200
    assert stranger.status_code == 429
    assert int(stranger.headers["retry-after"]) <= 2


async def test_guesses_from_many_addresses_delay_strangers_not_known_addresses(
    make_api,
) -> None:
    async with make_api(login_failures_per_account=5) as api:
        await api.register(username="alice")
        assert (await login(api.client, "alice", PASSWORD, address="10.7.7.7")).status_code == 200
        for n in range(5):
            failed = await login(api.client, "alice", f"guess-{n}", address=f"10.4.0.{n}")
            assert failed.status_code == 401
        stranger = await login(api.client, "alice", "guess-x", address="10.4.1.1")
        owner = await login(api.client, "alice", PASSWORD, address="10.7.7.7")

    assert stranger.status_code == 429
    assert owner.status_code == 200


async def test_email_and_username_share_one_account_budget(client: httpx.AsyncClient, api) -> None:
    await api.register(username="alice", email="alice@example.com")

    for n in range(3):
        assert (await login(client, "alice", f"guess-{n}")).status_code == 401
    for n in range(2):
        assert (await login(client, "ALICE@example.com", f"guess-{n}")).status_code == 401

    assert (await login(client, "alice", PASSWORD)).status_code == 429


async def test_unknown_accounts_are_throttled_like_known_ones(client: httpx.AsyncClient) -> None:
    statuses = [(await login(client, "ghost", f"guess-{n}")).status_code for n in range(6)]
    assert statuses == [401] * 5 + [429]


async def test_a_success_resets_the_account_counter(client: httpx.AsyncClient, api) -> None:
    await api.register(username="alice")
    for n in range(4):
        assert (await login(client, "alice", f"guess-{n}")).status_code == 401
    assert (await login(client, "alice", PASSWORD)).status_code == 200

    statuses = [(await login(client, "alice", f"again-{n}")).status_code for n in range(4)]

    assert statuses == [401] * 4


async def test_one_address_is_throttled_across_accounts(make_api) -> None:
    async with make_api(login_failures_per_address=3, login_failures_per_account=100) as api:
        statuses = [
            (await login(api.client, f"user{n}", "nope-nope", address="203.0.113.7")).status_code
            for n in range(4)
        ]
        other_address = await login(api.client, "user9", "nope-nope", address="203.0.113.8")

    assert statuses == [401, 401, 401, 429]
    assert other_address.status_code == 401


async def test_a_forged_forwarded_for_entry_does_not_escape_the_address_limit(make_api) -> None:
    async with make_api(login_failures_per_address=3, login_failures_per_account=100) as api:
        statuses = [
            (
                await api.client.post(
                    "/api/v1/auth/login",
                    json={"username": f"user{n}", "password": "nope-nope"},
                    headers={"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.7"},
                )
            ).status_code
            for n in range(4)
        ]

    assert statuses == [401, 401, 401, 429]


async def test_more_trusted_proxies_move_the_client_leftwards(make_api) -> None:
    async with make_api(
        login_failures_per_address=2, login_failures_per_account=100, forwarded_for_proxy_hops=2
    ) as api:
        statuses = [
            (
                await api.client.post(
                    "/api/v1/auth/login",
                    json={"username": f"user{n}", "password": "nope-nope"},
                    headers={"X-Forwarded-For": f"6.6.6.{n}, 203.0.113.7, 10.0.0.{n}"},
                )
            ).status_code
            for n in range(3)
        ]

    assert statuses == [401, 401, 429]


async def test_forwarded_for_is_ignored_unless_trusted(make_api) -> None:
    async with make_api(
        login_failures_per_address=3, login_failures_per_account=100, trust_forwarded_for=False
    ) as api:
        # Spoofed, changing X-Forwarded-For: all from the one socket address really.
        statuses = [
            (
                await login(api.client, f"user{n}", "nope-nope", address=f"198.51.100.{n}")
            ).status_code
            for n in range(4)
        ]

    assert statuses == [401, 401, 401, 429]


async def test_successful_logins_from_one_address_are_never_throttled(make_api) -> None:
    async with make_api(login_failures_per_address=3) as api:
        for n in range(10):
            await api.register(username=f"member{n}")
        statuses = [
            (await login(api.client, f"member{n}", PASSWORD, address="192.0.2.1")).status_code
            for n in range(10)
            for _ in range(2)
        ]

    assert statuses == [200] * 20


async def test_wrong_current_password_counts_against_the_account(
    client: httpx.AsyncClient, api
) -> None:
    alice = await api.account(username="alice")

    statuses = [
        (
            await client.post(
                "/api/v1/users/me/password",
                json={"current_password": f"guess-{n}", "new_password": "whatever-new-1"},
                headers=alice.headers,
            )
        ).status_code
        for n in range(6)
    ]

    assert statuses == [400] * 5 + [429]
    assert (await login(client, "alice", PASSWORD)).status_code == 429


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_outage_falls_back_to_a_local_limit(make_api) -> None:
    async with make_api(redis_url=f"redis://127.0.0.1:{closed_port()}/0") as api:
        await api.register(username="alice")
        statuses = [(await login(api.client, "alice", f"guess-{n}")).status_code for n in range(6)]
        ok_elsewhere = await login(api.client, "bob", "guess")

    assert statuses == [401] * 5 + [429]
    assert ok_elsewhere.status_code == 401


async def test_parallel_wrong_guesses_cannot_all_pass_the_limit(make_api) -> None:
    """Each attempt is reserved before the password check: 20 guesses at once from 20
    addresses, account limit 5."""
    async with make_api(login_failures_per_account=5) as api:
        await api.register(username="alice")
        responses = await asyncio.gather(
            *[login(api.client, "alice", f"guess-{n}", address=f"10.2.0.{n}") for n in range(20)]
        )
        statuses = sorted(response.status_code for response in responses)
        late = await login(api.client, "alice", PASSWORD, address="10.2.1.1")
    assert statuses == [401] * 5 + [429] * 15
    assert late.status_code == 429


async def test_parallel_guesses_from_one_address_cannot_all_pass(make_api) -> None:
    async with make_api(login_failures_per_address=3, login_failures_per_account=100) as api:
        responses = await asyncio.gather(
            *[login(api.client, f"user{n}", "nope-nope", address="203.0.113.9") for n in range(12)]
        )
    assert sorted(response.status_code for response in responses) == [401] * 3 + [429] * 9


async def test_the_failure_count_outlives_its_longest_delay(make_api) -> None:
    """At the maximum delay the count must still be there when the delay ends: otherwise every
    maximum delay would hand out a fresh set of free guesses."""
    async with make_api(
        login_failures_per_pair=1, login_delay_max_seconds=60, login_failure_window_seconds=30
    ) as api:
        await api.register(username="alice")
        throttle = api.app.state.login_throttle
        for n in range(8):  # delays 1, 2, ..., 64 → capped at 60
            await login(api.client, "alice", f"guess-{n}", address="10.6.0.1")
            async for key in throttle.redis.scan_iter(match=f"{throttle.prefix}login:pair:*"):
                await throttle.redis.hdel(key, "until")
        await login(api.client, "alice", "guess-last", address="10.6.0.1")
        keys = [
            key async for key in throttle.redis.scan_iter(match=f"{throttle.prefix}login:pair:*")
        ]
        ttl_ms = await throttle.redis.pttl(keys[0])

    assert ttl_ms > 60_000  # the 60 s delay plus the 30 s window
