"""Access that ends at once: which events revoke what, the in-memory list, its Redis copy written
by the relay, the listener that loads and follows it, and the token check that consults it."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from event_fixtures import access_token, eventually, outbox_database, replica_app, reset_tables
from event_tables import OUTBOX
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from taskflow_kit.auth import principal_from_token
from taskflow_kit.background import running
from taskflow_kit.errors import Unauthorized
from taskflow_kit.events import USER_STREAM, Event, stream_key
from taskflow_kit.outbox import Outbox, OutboxRelay
from taskflow_kit.redis_client import create_stream_redis
from taskflow_kit.revocation import (
    Revocation,
    RevocationList,
    RevocationListener,
    RevocationStore,
    revocation_of,
)
from taskflow_kit.testing import test_redis_url
from taskflow_kit.tokens import TokenConfig

AT = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
BOUND = 1.0  # seconds: the documented revocation bound


def user_event(type_: str, data: dict[str, Any], subject: str = "5") -> Event:
    return Event(type=type_, producer="user-service", subject_id=subject, data=data, occurred_at=AT)


PROFILE = {"id": 5, "username": "ada", "full_name": None, "is_active": False, "is_superuser": False}
RULES = [
    ("user.deleted", {"user_id": 5}, Revocation(5, before=AT.timestamp())),
    (
        "user.sessions_revoked",
        {"user_id": 5, "reason": "password"},
        Revocation(5, before=AT.timestamp()),
    ),
    (
        "user.updated",
        {"user": PROFILE, "revoke_tokens": True},
        Revocation(5, before=AT.timestamp()),
    ),
    ("user.updated", {"user": PROFILE, "revoke_tokens": False}, None),
    ("user.registered", {"user": PROFILE}, None),
    (
        "user.logged_out",
        {"user_id": 5, "session_id": "s-1", "reason": "logout"},
        Revocation(5, session_id="s-1"),
    ),
    ("user.logged_out", {"user_id": 5}, None),
    ("task.deleted", {"task": {"id": 1}, "owner_id": 5, "assignee_id": None}, None),
]


@pytest.mark.parametrize(("type_", "data", "expected"), RULES)
def test_revocation_of(type_: str, data: dict[str, Any], expected: Revocation | None) -> None:
    assert revocation_of(user_event(type_, data)) == expected


def test_revocation_of_takes_the_user_from_data_then_the_subject() -> None:
    assert revocation_of(user_event("user.deleted", {}, subject="9")) == Revocation(
        9, before=AT.timestamp()
    )
    assert revocation_of(
        user_event("user.updated", {"user": {**PROFILE, "id": 8}, "revoke_tokens": True})
    ) == Revocation(8, before=AT.timestamp())
    assert revocation_of(user_event("user.deleted", {}, subject="not-a-number")) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
USER_TYPES = ["user.deleted", "user.updated", "user.logged_out", "user.sessions_revoked", "user.x"]


@given(
    st.sampled_from(USER_TYPES),
    st.dictionaries(
        st.sampled_from(["user_id", "user", "session_id", "revoke_tokens", "other"]), json_values
    ),
    st.text(max_size=10),
)
def test_revocation_of_never_raises(type_: str, data: dict[str, Any], subject: str) -> None:
    """A revoking event is recorded by the relay's publish hook: an exception there would stop
    the relay publishing anything, forever."""
    revocation = revocation_of(user_event(type_, data, subject=subject))
    if revocation is not None:
        assert isinstance(revocation.user_id, int)
        assert (revocation.before is None) != (revocation.session_id is None)


def test_revocation_list() -> None:
    revocations = RevocationList()
    t = 1_000_000.0
    assert not revocations.is_revoked(1, t - 10, None)
    revocations.apply(Revocation(1, before=t))
    assert revocations.is_revoked(1, t - 0.000001, None)  # issued before T: void
    assert not revocations.is_revoked(1, t, None)  # issued at or after T: valid
    assert not revocations.is_revoked(1, t + 5, "any-session")
    assert not revocations.is_revoked(2, t - 10, None)  # another user
    revocations.apply(Revocation(1, before=t - 100))  # an older event read late changes nothing
    assert revocations.is_revoked(1, t - 50, None)
    revocations.apply(Revocation(2, session_id="s-2"), noted_at=t)
    assert revocations.is_revoked(2, t + 10, "s-2")
    assert revocations.is_revoked(3, t + 10, "s-2")  # a session id names one session only
    assert not revocations.is_revoked(2, t + 10, "s-3")
    assert not revocations.is_revoked(2, t + 10, None)


def test_revocation_list_prune_drops_only_entries_older_than_any_token() -> None:
    revocations = RevocationList(max_token_age=100.0)
    now = 10_000.0
    revocations.apply(Revocation(1, before=now - 101))
    revocations.apply(Revocation(2, before=now - 99))
    revocations.apply(Revocation(None, session_id="old"), noted_at=now - 101)
    revocations.apply(Revocation(None, session_id="new"), noted_at=now - 1)
    revocations.prune(now)
    assert revocations.users == {2: now - 99}
    assert set(revocations.sessions) == {"new"}


# -- the Redis copy and the listener, fed by a real relay ------------------------------------


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[tuple[str, AsyncEngine]]:
    async with outbox_database("tf_kit_revocation") as created:
        yield created


@pytest.fixture
async def stream_redis() -> AsyncIterator[Redis]:
    client = create_stream_redis(test_redis_url())
    yield client
    await client.aclose()


async def test_store_listener_and_snapshot(
    database: tuple[str, AsyncEngine], redis: Redis, stream_redis: Redis, event_prefix: str
) -> None:
    url, engine = database
    await reset_tables(engine)
    store = RevocationStore(redis, key_prefix=event_prefix)
    relay = OutboxRelay(
        engine=engine,
        database_url=url,
        table=OUTBOX,
        redis=redis,
        producer=f"user-service-{uuid.uuid4().hex[:6]}",
        key_prefix=event_prefix,
        poll_interval=30.0,  # only the commit's NOTIFY wakes the relay in time
        hooks=[store.record],
    )
    outbox = Outbox(OUTBOX, producer="user-service", stream=USER_STREAM)

    async def write(type_: str, user_id: int, data: dict[str, Any]) -> tuple[Event, float]:
        async with AsyncSession(engine) as session:
            async with session.begin():
                event = await outbox.add(session, type_, user_id, data)
            committed = time.monotonic()
        return event, committed

    first = RevocationList()
    listener = RevocationListener(stream_redis, key_prefix=event_prefix, revocations=first)
    async with running(relay.run()):
        deleted, _ = await write("user.deleted", 1, {"user_id": 1})
        await write("user.registered", 2, {"user": {**PROFILE, "id": 2}})

        async def recorded() -> bool:
            return await redis.hget(store.users_key, "1") is not None

        await eventually(recorded, timeout=5, what="the relay hook to record user 1")
        assert (
            float(await redis.hget(store.users_key, "1") or "nan")
            == deleted.occurred_at.timestamp()
        )
        assert await redis.hkeys(store.users_key) == ["1"]  # user.registered revokes nothing

        await listener.load()
        assert first.users == {1: deleted.occurred_at.timestamp()}
        latencies = []
        async with running(listener.run()):
            changes: list[tuple[str, int, dict[str, Any], tuple[str, Any]]] = [
                ("user.logged_out", 3, {"user_id": 3, "session_id": "s-3"}, ("session", "s-3")),
                (
                    "user.updated",
                    4,
                    {"user": {**PROFILE, "id": 4}, "revoke_tokens": True},
                    ("user", 4),
                ),
                ("user.sessions_revoked", 5, {"user_id": 5}, ("user", 5)),
            ]
            for type_, user_id, data, check in changes:
                _, committed = await write(type_, user_id, data)

                async def applied(check: tuple[str, Any] = check) -> bool:
                    kind, key = check
                    return key in (first.sessions if kind == "session" else first.users)

                await eventually(applied, timeout=5, what=f"{type_} applied by the listener")
                latencies.append(time.monotonic() - committed)
    print(
        f"\ncommit -> revocation applied by a running listener: max {max(latencies) * 1000:.0f} ms"
    )
    assert max(latencies) < BOUND

    # A process started after the events knows them from the snapshot alone (no stream read).
    later = RevocationList()
    late_listener = RevocationListener(stream_redis, key_prefix=event_prefix, revocations=later)
    await late_listener.load()
    assert later.users == first.users
    assert set(later.users) == {1, 4, 5}
    assert set(later.sessions) == {"s-3"}
    stream = stream_key(event_prefix, USER_STREAM)
    last: Any = await redis.xrevrange(stream, count=1)
    assert late_listener.tail.positions == {stream: last[0][0]}  # follows on from the end

    # Entries too old to void any live token leave the Redis copy.
    await redis.hset(store.users_key, "99", repr(time.time() - 10_000))
    assert await store.prune(max_age=5_000) == 1
    assert not await redis.hexists(store.users_key, "99")
    assert await redis.hexists(store.users_key, "1")


async def test_listener_start_does_not_hang_on_a_dead_redis() -> None:
    dead = create_stream_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    listener = RevocationListener(dead, key_prefix="x:", revocations=RevocationList())
    started = time.monotonic()
    await listener.start(wait=1.0)
    assert time.monotonic() - started < 2.0
    assert not listener.loaded
    await dead.aclose()


# -- the token check ---------------------------------------------------------------------------


def test_principal_from_token_refuses_a_revoked_token(token_config: TokenConfig) -> None:
    now = dt.datetime.now(dt.UTC)
    revocations = RevocationList()
    old = access_token(token_config, 7, sid="s-old", now=now - dt.timedelta(seconds=1))
    other_session = access_token(token_config, 8, sid="s-other", now=now)
    assert principal_from_token(token_config, old, revocations).session_id == "s-old"

    revocations.apply(Revocation(7, before=now.timestamp()))
    with pytest.raises(Unauthorized) as refused:
        principal_from_token(token_config, old, revocations)
    assert refused.value.status_code == 401
    assert "revoked" in str(refused.value.detail)
    fresh = access_token(token_config, 7, sid="s-new", now=now + dt.timedelta(microseconds=1))
    assert principal_from_token(token_config, fresh, revocations).id == 7  # signed in again

    revocations.apply(Revocation(8, session_id="s-other"))
    with pytest.raises(Unauthorized):
        principal_from_token(token_config, other_session, revocations)
    assert principal_from_token(token_config, old, None).id == 7  # no list, no revocation


async def test_a_service_answers_401_for_a_revoked_token(token_config: TokenConfig) -> None:
    revocations = RevocationList()
    app = replica_app(token_config, revocations)

    token = access_token(token_config, 7, sid="s", now=dt.datetime.now(dt.UTC))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        assert (await client.get("/me", headers=headers)).json() == {"id": 7}
        revocations.apply(Revocation(7, session_id="s"))
        response = await client.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == "Bearer"
