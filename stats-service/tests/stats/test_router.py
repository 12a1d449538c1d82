"""The statistics routes against real Redis, with task-service faked by respx."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from redis.asyncio import Redis

AGGREGATES = "/internal/tasks/aggregates"
STALE = '110 - "Response is Stale"'

Payload = Callable[..., dict[str, Any]]
Auth = Callable[..., dict[str, str]]


def fresh_key(prefix: str, key: str) -> str:
    return f"{prefix}stats:v1:fresh:{key}"


def last_good_key(prefix: str, key: str) -> str:
    return f"{prefix}stats:v1:last-good:{key}"


async def test_stats_are_derived_from_the_aggregates(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    generated_at = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)
    headers = auth(7)
    route = task_service.get(AGGREGATES).respond(
        json=payload(
            todo=2,
            in_progress=1,
            done=4,
            priorities=(1, 2, 3, 1),
            overdue=1,
            due_next_7_days=2,
            completed_last_7_days=3,
            generated_at=generated_at,
        )
    )

    response = await client.get("/api/v1/stats/", headers=headers)

    assert response.status_code == 200
    assert response.json() == {
        "total_tasks": 7,
        "completed_tasks": 4,
        "completed_percentage": 57.14,
        "by_status": {"todo": 2, "in_progress": 1, "done": 4},
        "by_priority": {"low": 1, "medium": 2, "high": 3, "urgent": 1},
        "overdue": 1,
        "due_next_7_days": 2,
        "completed_last_7_days": 3,
        "generated_at": "2026-11-22T03:00:00Z",
        "stale": False,
    }
    assert "Warning" not in response.headers
    request = route.calls.last.request
    assert request.headers["Authorization"] == headers["Authorization"]
    assert request.url.params.get("scope") is None
    assert "activity_days" in request.url.params


async def test_no_tasks_means_zero_percent(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    task_service.get(AGGREGATES).respond(json=payload())

    body = (await client.get("/api/v1/stats/", headers=auth(1))).json()

    assert body["total_tasks"] == 0
    assert body["completed_percentage"] == 0


async def test_both_spellings_of_the_path_answer(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    task_service.get(AGGREGATES).respond(json=payload(done=1))

    with_slash = await client.get("/api/v1/stats/", headers=auth(1))
    without_slash = await client.get("/api/v1/stats", headers=auth(1))

    assert with_slash.status_code == without_slash.status_code == 200
    assert with_slash.json() == without_slash.json()


async def test_a_second_read_is_served_from_the_cache(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
    redis: Redis,
    redis_prefix: str,
) -> None:
    route = task_service.get(AGGREGATES).respond(json=payload(todo=3, done=1))

    first = await client.get("/api/v1/stats/", headers=auth(5))
    second = await client.get("/api/v1/stats/", headers=auth(5))

    assert route.call_count == 1
    assert first.json() == second.json()
    assert 0 < await redis.ttl(fresh_key(redis_prefix, "user:5:summary")) <= 30
    assert await redis.ttl(last_good_key(redis_prefix, "user:5:summary")) > 30


async def test_an_expired_entry_is_read_again_from_task_service(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
    redis: Redis,
    redis_prefix: str,
) -> None:
    route = task_service.get(AGGREGATES)
    route.side_effect = [
        httpx.Response(200, json=payload(todo=1)),
        httpx.Response(200, json=payload(todo=1, done=1)),
    ]
    await client.get("/api/v1/stats/", headers=auth(5))
    await redis.delete(fresh_key(redis_prefix, "user:5:summary"))  # what the TTL does

    response = await client.get("/api/v1/stats/", headers=auth(5))

    assert route.call_count == 2
    assert response.json()["completed_tasks"] == 1


async def test_each_user_has_their_own_cache_entry(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
    redis: Redis,
    redis_prefix: str,
) -> None:
    alice_headers, bob_headers = auth(1), auth(2)
    answers = {
        alice_headers["Authorization"]: payload(todo=1),
        bob_headers["Authorization"]: payload(done=9),
    }
    route = task_service.get(AGGREGATES).mock(
        side_effect=lambda request: httpx.Response(
            200, json=answers[request.headers["Authorization"]]
        )
    )

    alice = await client.get("/api/v1/stats/", headers=alice_headers)
    bob = await client.get("/api/v1/stats/", headers=bob_headers)
    alice_again = await client.get("/api/v1/stats/", headers=alice_headers)

    assert route.call_count == 2
    assert alice.json()["total_tasks"] == 1
    assert bob.json()["total_tasks"] == 9
    assert alice_again.json() == alice.json()
    assert (
        await redis.exists(
            fresh_key(redis_prefix, "user:1:summary"), fresh_key(redis_prefix, "user:2:summary")
        )
        == 2
    )


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(500),
        httpx.Response(503),
        httpx.Response(404),  # an older task-service without the endpoint
        httpx.Response(200, json={"total": 3}),  # unreadable
    ],
    ids=["down", "slow", "500", "503", "404", "invalid-body"],
)
async def test_a_failing_task_service_gives_the_last_known_value_marked_stale(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
    redis: Redis,
    redis_prefix: str,
    failure: Exception | httpx.Response,
) -> None:
    route = task_service.get(AGGREGATES).respond(json=payload(todo=2, done=2))
    known = (await client.get("/api/v1/stats/", headers=auth(3))).json()
    await redis.delete(fresh_key(redis_prefix, "user:3:summary"))
    route.mock(side_effect=failure)

    response = await client.get("/api/v1/stats/", headers=auth(3))

    assert route.call_count >= 2
    assert response.status_code == 200
    assert response.headers["Warning"] == STALE
    assert int(response.headers["Age"]) >= 0
    body = response.json()
    assert body["stale"] is True
    assert body == {**known, "stale": True}


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(502)],
    ids=["down", "slow", "502"],
)
async def test_a_failing_task_service_with_nothing_known_is_503(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    auth: Auth,
    failure: Exception | httpx.Response,
) -> None:
    task_service.get(AGGREGATES).mock(side_effect=failure)

    response = await client.get("/api/v1/stats/", headers=auth(3))

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["status"] == 503
    assert "total_tasks" not in body


async def test_an_open_circuit_answers_without_calling_task_service(
    client: httpx.AsyncClient, task_service: respx.MockRouter, auth: Auth
) -> None:
    route = task_service.get(AGGREGATES).mock(side_effect=httpx.Response(500))
    for _ in range(5):  # the kit's breaker opens after five consecutive failures
        assert (await client.get("/api/v1/stats/", headers=auth(4))).status_code == 503
    calls_before = route.call_count

    response = await client.get("/api/v1/stats/", headers=auth(4))

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert route.call_count == calls_before


@pytest.mark.parametrize("status", [401, 403])
async def test_task_service_refusing_the_caller_is_passed_on_not_cached_nor_stale(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
    redis: Redis,
    redis_prefix: str,
    status: int,
) -> None:
    route = task_service.get(AGGREGATES)
    refusal = httpx.Response(
        status,
        json={"type": "about:blank", "title": "No", "status": status, "detail": "Account inactive"},
        headers={"Content-Type": "application/problem+json"},
    )
    route.side_effect = [httpx.Response(200, json=payload(todo=1)), refusal, refusal]
    await client.get("/api/v1/stats/", headers=auth(6))
    await redis.delete(fresh_key(redis_prefix, "user:6:summary"))

    first = await client.get("/api/v1/stats/", headers=auth(6))
    second = await client.get("/api/v1/stats/", headers=auth(6))

    assert first.status_code == second.status_code == status
    assert first.headers["Content-Type"] == "application/problem+json"
    assert first.json()["detail"] == "Account inactive"
    assert "Warning" not in first.headers
    assert route.call_count == 3
    if status == 401:
        assert first.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dXNlcjpwdw=="}],
    ids=["none", "garbage", "basic"],
)
async def test_tokens_are_checked_locally(
    client: httpx.AsyncClient, task_service: respx.MockRouter, headers: dict[str, str]
) -> None:
    route = task_service.get(AGGREGATES).respond(json={})

    response = await client.get("/api/v1/stats/", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert route.call_count == 0


async def test_overview_is_for_administrators_only(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    route = task_service.get(AGGREGATES).respond(json=payload(todo=1))

    response = await client.get("/api/v1/stats/overview", headers=auth(8))

    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    assert route.call_count == 0


async def test_overview_reads_the_system_scope_and_is_cached(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
    redis: Redis,
    redis_prefix: str,
) -> None:
    generated_at = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)
    route = task_service.get(AGGREGATES, params={"scope": "system"}).respond(
        json=payload(todo=10, in_progress=5, done=5, overdue=4, owners=6, generated_at=generated_at)
    )

    first = await client.get("/api/v1/stats/overview", headers=auth(1, is_superuser=True))
    second = await client.get("/api/v1/stats/overview", headers=auth(2, is_superuser=True))

    assert first.status_code == 200
    assert first.json() == {
        "total_tasks": 20,
        "completed_tasks": 5,
        "completed_percentage": 25.0,
        "by_status": {"todo": 10, "in_progress": 5, "done": 5},
        "by_priority": {"low": 0, "medium": 20, "high": 0, "urgent": 0},
        "overdue": 4,
        "owners": 6,
        "generated_at": "2026-11-22T03:00:00Z",
        "stale": False,
    }
    assert second.json() == first.json()
    assert route.call_count == 1
    assert await redis.exists(fresh_key(redis_prefix, "system:overview")) == 1


async def test_overview_is_stale_or_503_when_task_service_fails(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
    redis: Redis,
    redis_prefix: str,
) -> None:
    admin = auth(1, is_superuser=True)
    route = task_service.get(AGGREGATES)
    route.side_effect = httpx.ConnectError("refused")
    unavailable = await client.get("/api/v1/stats/overview", headers=admin)
    route.side_effect = None
    route.return_value = httpx.Response(200, json=payload(done=3, owners=2))
    await client.get("/api/v1/stats/overview", headers=admin)
    await redis.delete(fresh_key(redis_prefix, "system:overview"))
    route.side_effect = httpx.ConnectError("refused")

    stale = await client.get("/api/v1/stats/overview", headers=admin)

    assert unavailable.status_code == 503
    assert "Retry-After" in unavailable.headers
    assert stale.status_code == 200
    assert stale.headers["Warning"] == STALE
    assert stale.json()["stale"] is True
    assert stale.json()["completed_tasks"] == 3


async def test_activity_defaults_to_30_zero_filled_utc_days(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    generated_at = dt.datetime(2026, 11, 22, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    today = dt.date(2026, 11, 21)  # 00:30 at +05:00 is still the 21st in UTC
    # Only two rows sent (one outside the window): the rest must be filled with zeros.
    rows = {today: (4, 1), today - dt.timedelta(days=2): (0, 2), dt.date(2020, 1, 1): (9, 9)}
    route = task_service.get(AGGREGATES).respond(
        json=payload(activity=rows, generated_at=generated_at)
    )

    response = await client.get("/api/v1/stats/activity", headers=auth(2))

    assert response.status_code == 200
    assert route.calls.last.request.url.params["activity_days"] == "30"
    body = response.json()
    assert len(body) == 30
    assert body[0]["date"] == (today - dt.timedelta(days=29)).isoformat()
    assert body[-1] == {"date": today.isoformat(), "created": 4, "completed": 1}
    assert body[-3] == {
        "date": (today - dt.timedelta(days=2)).isoformat(),
        "created": 0,
        "completed": 2,
    }
    assert sum(row["created"] for row in body) == 4
    assert sum(row["completed"] for row in body) == 3


@pytest.mark.parametrize("days", [1, 7, 365])
async def test_activity_has_one_row_per_requested_day(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
    days: int,
) -> None:
    route = task_service.get(AGGREGATES).respond(json=payload(activity_days=days))

    response = await client.get("/api/v1/stats/activity", params={"days": days}, headers=auth(2))

    assert response.status_code == 200
    assert len(response.json()) == days
    assert route.calls.last.request.url.params["activity_days"] == str(days)


@pytest.mark.parametrize("days", ["0", "366", "-1", "abc", "1.5"])
async def test_activity_days_out_of_range_is_422(
    client: httpx.AsyncClient, task_service: respx.MockRouter, auth: Auth, days: str
) -> None:
    route = task_service.get(AGGREGATES).respond(json={})

    response = await client.get("/api/v1/stats/activity", params={"days": days}, headers=auth(2))

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["query", "days"]
    assert route.call_count == 0


async def test_activity_is_cached_per_window_and_stale_when_task_service_fails(
    client: httpx.AsyncClient,
    task_service: respx.MockRouter,
    payload: Payload,
    auth: Auth,
    redis: Redis,
    redis_prefix: str,
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    route = task_service.get(AGGREGATES).mock(
        side_effect=lambda request: httpx.Response(
            200,
            json=payload(
                activity_days=int(request.url.params["activity_days"]),
                activity={today: (2, 1)},
            ),
        )
    )
    week = await client.get("/api/v1/stats/activity?days=7", headers=auth(2))
    await client.get("/api/v1/stats/activity?days=7", headers=auth(2))
    await client.get("/api/v1/stats/activity?days=14", headers=auth(2))
    assert route.call_count == 2
    await redis.delete(fresh_key(redis_prefix, "user:2:activity:7"))
    route.side_effect = httpx.ConnectError("refused")

    stale = await client.get("/api/v1/stats/activity?days=7", headers=auth(2))
    unknown = await client.get("/api/v1/stats/activity?days=3", headers=auth(2))

    assert stale.status_code == 200
    assert stale.headers["Warning"] == STALE
    assert stale.json() == week.json()
    assert unknown.status_code == 503
    assert "Retry-After" in unknown.headers


async def test_concurrent_misses_of_one_caller_share_one_task_service_call(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    release = asyncio.Event()
    arrived: list[httpx.Request] = []

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        arrived.append(request)
        await release.wait()
        return httpx.Response(200, json=payload(todo=1, done=1))

    route = task_service.get(AGGREGATES).mock(side_effect=slow_answer)
    headers = auth(12)

    requests = [
        asyncio.ensure_future(client.get("/api/v1/stats/", headers=headers)) for _ in range(5)
    ]
    async with asyncio.timeout(5):
        while not arrived:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # give the other four time to arrive (they must not call)
    release.set()
    responses = await asyncio.gather(*requests)

    assert [response.status_code for response in responses] == [200] * 5
    assert {response.json()["completed_percentage"] for response in responses} == {50.0}
    assert len(arrived) == route.call_count == 1


async def test_a_tagged_copy_is_revalidated_and_served_on_304(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    tag = 'W/"5.12"'

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers.get("If-None-Match") == tag:
            return httpx.Response(304, headers={"ETag": tag})
        return httpx.Response(200, json=payload(todo=3, done=1), headers={"ETag": tag})

    route = task_service.get(AGGREGATES).mock(side_effect=answer)

    first = await client.get("/api/v1/stats/", headers=auth(5))
    second = await client.get("/api/v1/stats/", headers=auth(5))

    assert route.call_count == 2
    assert "If-None-Match" not in route.calls[0].request.headers
    assert route.calls[1].request.headers["If-None-Match"] == tag
    assert second.status_code == 200
    assert second.json() == first.json()


async def test_a_tagged_copy_follows_a_change_with_no_event_handled(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    # The write's event has not reached stats-service (no invalidation at all): task-service's
    # new tag is what tells the cached copy is stale.
    route = task_service.get(AGGREGATES)
    route.side_effect = [
        httpx.Response(200, json=payload(todo=1), headers={"ETag": 'W/"5.1"'}),
        httpx.Response(200, json=payload(todo=1, done=1), headers={"ETag": 'W/"5.2"'}),
        httpx.Response(304, headers={"ETag": 'W/"5.2"'}),
    ]

    before = await client.get("/api/v1/stats/", headers=auth(5))
    after = await client.get("/api/v1/stats/", headers=auth(5))
    again = await client.get("/api/v1/stats/", headers=auth(5))

    assert before.json()["total_tasks"] == 1
    assert after.json()["total_tasks"] == 2
    assert again.json() == after.json()
    assert [call.request.headers.get("If-None-Match") for call in route.calls] == [
        None,
        'W/"5.1"',
        'W/"5.2"',
    ]


async def test_a_tagged_copy_is_the_last_known_one_when_task_service_fails(
    client: httpx.AsyncClient, task_service: respx.MockRouter, payload: Payload, auth: Auth
) -> None:
    route = task_service.get(AGGREGATES)
    route.side_effect = [
        httpx.Response(200, json=payload(todo=4), headers={"ETag": 'W/"5.1"'}),
        *[httpx.Response(503)] * 3,
    ]
    await client.get("/api/v1/stats/", headers=auth(5))

    response = await client.get("/api/v1/stats/", headers=auth(5))

    assert response.status_code == 200
    assert response.json()["total_tasks"] == 4
    assert response.json()["stale"] is True
    assert response.headers["Warning"] == STALE
