"""Replicas, retries, ejection, probes, timeouts and the circuit breaker, against real servers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from conftest import BackendStarter, GatewayFactory
from gateway_doubles import (
    EMPTY_OPENAPI,
    Backend,
    dropping_server,
    failing_server,
    free_port,
    start_server,
)


def replica_states(status: dict, upstream: str) -> dict[str, str]:
    return {r["url"]: r["state"] for r in status["upstreams"][upstream]["replicas"]}


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_load_spreads_over_replicas(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _a, server_a = await start_backend("a", openapi=EMPTY_OPENAPI)
    _b, server_b = await start_backend("b", openapi=EMPTY_OPENAPI)
    async with make_gateway(
        users=[server_a.url],
        stats=[server_a.url],
        tasks=[server_a.url, server_b.url],
        openapi_refresh_seconds=60,
    ) as gw:
        seen = Counter()
        for _ in range(20):
            response = await gw.client.get("/api/v1/tasks")
            seen[response.json()["backend"]] += 1
        assert seen == {"a": 10, "b": 10}


async def test_a_dead_replica_costs_no_failed_request_and_is_ejected(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    alive, server = await start_backend("alive")
    dead = f"http://127.0.0.1:{free_port()}"
    async with make_gateway(tasks=[dead, server.url], health_interval_seconds=60) as gw:
        for method in ("GET", "POST", "DELETE"):  # nothing was sent: any method may go elsewhere
            for _ in range(3):
                response = await gw.client.request(method, "/api/v1/tasks/")
                assert response.status_code == 200
        status = (await gw.client.get("/api/status")).json()
        assert replica_states(status, "task-service")[dead] in {"down", "ejected"}
        assert replica_states(status, "task-service")[server.url] == "up"
        assert alive.hits == 9


async def test_a_restarted_replica_is_brought_back_by_the_health_probe(
    make_gateway: GatewayFactory,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    backend = Backend("late")
    async with make_gateway(tasks=[url], health_interval_seconds=0.1) as gw:

        async def state() -> str:
            return replica_states((await gw.client.get("/api/status")).json(), "task-service")[url]

        await wait_for(lambda: _eq(state(), "down"))
        server = await start_server(backend.app(), port=port)
        try:
            await wait_for(lambda: _eq(state(), "up"))
            assert (await gw.client.get("/api/v1/tasks")).status_code == 200
        finally:
            await server.stop()


async def _eq(value, expected) -> bool:  # type: ignore[no-untyped-def]
    return await value == expected


async def test_repeated_5xx_eject_a_replica(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    broken, broken_server = await start_backend("broken", status=500)
    _good, good_server = await start_backend("good")
    async with make_gateway(
        tasks=[broken_server.url, good_server.url], eject_after_5xx=2, health_interval_seconds=60
    ) as gw:
        statuses = [(await gw.client.get("/api/v1/tasks")).status_code for _ in range(10)]
        assert statuses.count(500) == 2  # then the broken replica is out of rotation
        assert broken.hits == 2


def api_requests(heads: list[bytes]) -> list[bytes]:
    return [head for head in heads if b" /api/v1/" in head]  # not probes or docs fetches


async def test_lost_connection_is_retried_only_when_repeating_is_safe(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    good, good_server = await start_backend("good", openapi=EMPTY_OPENAPI)
    async with (
        dropping_server() as (dropping, heads),
        make_gateway(
            users=[good_server.url],
            stats=[good_server.url],
            tasks=[dropping, good_server.url],
            health_interval_seconds=60,
            openapi_refresh_seconds=60,
        ) as gw,
    ):
        replicas = gw.gateway.upstreams["task-service"].replicas
        replicas._next = 0  # the dropping replica first
        response = await gw.client.get("/api/v1/tasks")
        assert response.status_code == 200  # repeated on the other replica
        assert response.json()["backend"] == "good"
        dropped = len(api_requests(heads))
        assert dropped >= 1

        replicas._next = 0
        response = await gw.client.post("/api/v1/tasks/", json={"title": "x"})
        assert response.status_code == 502  # may have been processed: never repeated
        assert response.headers["content-type"] == "application/problem+json"
        assert len(api_requests(heads)) == dropped + 1

        replicas._next = 0
        response = await gw.client.post(
            "/api/v1/tasks/", json={"title": "x"}, headers={"Idempotency-Key": "k1"}
        )
        assert response.status_code == 200
        assert len(api_requests(heads)) == dropped + 2
    assert good.hits == 2


async def test_slow_replica_gives_504_within_the_timeout_and_is_ejected(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _slow, slow_server = await start_backend("slow", delay=5)
    async with make_gateway(
        tasks=[slow_server.url], read_timeout=0.3, deadline=2, health_interval_seconds=60
    ) as gw:
        started = time.monotonic()
        response = await gw.client.get("/api/v1/tasks")
        assert response.status_code == 504
        assert response.json()["status"] == 504
        assert time.monotonic() - started < 1.5
        status = (await gw.client.get("/api/status")).json()
        assert replica_states(status, "task-service")[slow_server.url] == "ejected"


async def test_overall_deadline_bounds_retries(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _slow, slow_server = await start_backend("slow", delay=5)
    async with make_gateway(
        tasks=[slow_server.url], read_timeout=3, deadline=0.4, health_interval_seconds=60
    ) as gw:
        started = time.monotonic()
        response = await gw.client.get("/api/v1/tasks")
        assert response.status_code == 504
        assert time.monotonic() - started < 1.5


async def test_breaker_fails_fast_then_half_opens_and_closes_on_success(
    make_gateway: GatewayFactory,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    backend = Backend("phoenix")
    async with make_gateway(
        tasks=[url],
        breaker_failures=3,
        breaker_reset_seconds=0.5,
        retries=0,
        health_interval_seconds=60,
    ) as gw:
        for _ in range(3):
            response = await gw.client.get("/api/v1/tasks")
            assert response.status_code == 503  # unreachable
        response = await gw.client.get("/api/v1/tasks")
        assert response.status_code == 503
        assert "circuit open" in response.json()["detail"]
        assert int(response.headers["retry-after"]) >= 1
        status = (await gw.client.get("/api/status")).json()
        assert status["upstreams"]["task-service"]["circuit"] == "open"

        server = await start_server(backend.app(), port=port)
        try:
            await asyncio.sleep(0.6)  # past the reset timeout: the next request is the probe
            response = await gw.client.get("/api/v1/tasks")
            assert response.status_code == 200
            status = (await gw.client.get("/api/status")).json()
            assert status["upstreams"]["task-service"]["circuit"] == "closed"
        finally:
            await server.stop()


async def test_failed_half_open_probe_reopens_the_breaker(make_gateway: GatewayFactory) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with make_gateway(
        tasks=[url],
        breaker_failures=1,
        breaker_reset_seconds=0.3,
        retries=0,
        health_interval_seconds=60,
    ) as gw:
        assert (await gw.client.get("/api/v1/tasks")).status_code == 503
        await asyncio.sleep(0.35)
        probe = await gw.client.get("/api/v1/tasks")
        assert "unreachable" in probe.json()["detail"]
        after = await gw.client.get("/api/v1/tasks")
        assert "circuit open" in after.json()["detail"]


async def test_connections_per_replica_are_bounded(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _slow, slow_server = await start_backend("slow", delay=0.5)
    async with make_gateway(
        tasks=[slow_server.url],
        max_connections_per_replica=1,
        connect_timeout=0.1,
        retries=0,
        health_interval_seconds=60,
    ) as gw:
        first, second = await asyncio.gather(
            gw.client.get("/api/v1/tasks/1"), gw.client.get("/api/v1/tasks/2")
        )
        assert sorted([first.status_code, second.status_code]) == [200, 503]
        # Busy is not broken: the replica stays in rotation and its connection is reused.
        status = (await gw.client.get("/api/status")).json()
        assert replica_states(status, "task-service")[slow_server.url] == "up"
        assert (await gw.client.get("/api/v1/tasks/3")).status_code == 200


async def test_one_frozen_replica_does_not_open_the_circuit_for_the_others(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _slow, slow_server = await start_backend("frozen", delay=5)
    _good, good_server = await start_backend("good")
    async with make_gateway(
        tasks=[slow_server.url, good_server.url],
        read_timeout=0.3,
        breaker_failures=2,
        health_interval_seconds=60,
    ) as gw:
        burst = await asyncio.gather(*(gw.client.get(f"/api/v1/tasks/{i}") for i in range(8)))
        assert {r.status_code for r in burst} == {200, 504}
        steady = [(await gw.client.get("/api/v1/tasks")).status_code for _ in range(10)]
        assert steady == [200] * 10
        status = (await gw.client.get("/api/status")).json()
        assert status["upstreams"]["task-service"]["circuit"] == "closed"
        assert replica_states(status, "task-service")[slow_server.url] == "ejected"


async def test_a_5xx_that_closes_the_connection_never_costs_the_next_write(
    make_gateway: GatewayFactory,
) -> None:
    """Issue 9 (4): after a 500 the service closes the kept-alive connection; the next
    non-idempotent request, from anyone, must not be written on it and lost as a 502."""
    async with (
        failing_server() as (url, heads),
        make_gateway(tasks=[url], health_interval_seconds=60) as gw,
    ):
        for _ in range(3):
            assert (await gw.client.get("/api/v1/tasks/boom")).status_code == 500
            response = await gw.client.post("/api/v1/tasks/", json={"title": "innocent"})
            assert response.status_code == 201
        assert sum(b"POST /api/v1/tasks/ " in head for head in heads) == 3  # each sent once


async def test_a_crashing_service_costs_other_clients_no_failed_write(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    """The same through a real uvicorn service whose handler raises."""
    backend, server = await start_backend("tasks")
    async with make_gateway(tasks=[server.url], health_interval_seconds=60) as gw:
        for index in range(5):
            assert (await gw.client.post("/api/v1/tasks/crash")).status_code == 500
            response = await gw.client.post("/api/v1/tasks/", json={"title": f"t{index}"})
            assert response.status_code == 200
    assert backend.hits == 5


async def test_a_request_that_may_have_been_processed_is_replayed_only_if_harmless(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    """Issue 9 (7): after a lost connection, only requests whose replay cannot change the
    outcome go to another replica; `Idempotency-Key` counts only where it is honoured."""
    good, good_server = await start_backend("good", openapi=EMPTY_OPENAPI)
    keyed = {"Idempotency-Key": "k1"}
    not_replayed = [
        ("POST", "/api/v1/users/me/password", keyed),  # the key is ignored there
        ("POST", "/api/v1/tasks/7/toggle", keyed),  # would flip twice
        ("POST", "/api/v1/auth/refresh", keyed),  # reuse detection would revoke the login
        ("POST", "/api/v1/tasks/", {}),  # no key: a second task
        ("PUT", "/api/v1/tasks/7", {"If-Match": 'W/"3"'}),  # the replay would answer 412
        ("PATCH", "/api/v1/tasks/7", {}),
        ("DELETE", "/api/v1/tasks/7", {}),  # the replay would answer 404
    ]
    replayed = [
        ("GET", "/api/v1/tasks/7", {}),
        ("HEAD", "/api/v1/tasks/7", {}),
        ("POST", "/api/v1/tasks/", keyed),  # the one route that honours the key
        ("POST", "/api/v1/tasks", keyed),
    ]
    async with (
        dropping_server() as (dropping, heads),
        make_gateway(
            users=[dropping, good_server.url],
            tasks=[dropping, good_server.url],
            stats=[good_server.url],
            health_interval_seconds=60,
            openapi_refresh_seconds=60,
        ) as gw,
    ):
        for method, path, headers in not_replayed + replayed:
            for upstream in gw.gateway.upstreams.values():
                upstream.replicas._next = 0  # the dropping replica first
            sent_before = len(api_requests(heads))
            hits_before = good.hits
            response = await gw.client.request(method, path, headers=headers, content=b"{}")
            assert len(api_requests(heads)) == sent_before + 1, (method, path)
            if (method, path, headers) in replayed:
                assert response.status_code == 200, (method, path)
                assert good.hits == hits_before + 1, (method, path)
            else:
                assert response.status_code == 502, (method, path)
                assert response.headers["content-type"] == "application/problem+json"
                assert good.hits == hits_before, (method, path)
