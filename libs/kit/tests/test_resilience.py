from __future__ import annotations

import httpx
import pytest
from taskflow_kit.resilience import (
    BreakerState,
    CircuitBreaker,
    ResilientClient,
    UpstreamUnavailable,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_half_opens_after_timeout() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() >= 10
    clock.now = 10.5
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the one probe
    assert not breaker.allow()  # no second probe while the first is in flight
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_failed_probe_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    clock.now = 6
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


async def test_connect_errors_are_retried_then_reported() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    client = ResilientClient(
        name="users",
        base_url="http://users",
        retries=2,
        backoff=0,
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.request("GET", "/x")
    assert calls == 3
    assert caught.value.status_code == 503
    assert "Retry-After" in caught.value.headers
    await client.aclose()


async def test_retry_succeeds_after_transient_connect_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"ok": True})

    client = ResilientClient(
        name="users", base_url="http://users", backoff=0, transport=httpx.MockTransport(handler)
    )
    response = await client.request("GET", "/x")
    assert response.json() == {"ok": True}
    assert client.breaker.state is BreakerState.CLOSED
    await client.aclose()


async def test_read_timeouts_are_not_retried_and_open_the_breaker() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("slow", request=request)

    client = ResilientClient(
        name="tasks",
        base_url="http://tasks",
        backoff=0,
        breaker=CircuitBreaker(failure_threshold=2, reset_timeout=30),
        transport=httpx.MockTransport(handler),
    )
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await client.request("GET", "/x")
    assert calls == 2  # the request may have reached the upstream: never replayed
    with pytest.raises(UpstreamUnavailable, match="circuit open"):
        await client.request("GET", "/x")
    assert calls == 2
    await client.aclose()


async def test_request_id_is_propagated() -> None:
    from taskflow_kit.context import request_id_var

    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-request-id"))
        return httpx.Response(204)

    client = ResilientClient(name="u", base_url="http://u", transport=httpx.MockTransport(handler))
    token = request_id_var.set("req-1")
    try:
        await client.request("GET", "/")
    finally:
        request_id_var.reset(token)
    assert seen == ["req-1"]
    await client.aclose()


def _opened_then_half_open(clock: FakeClock) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    clock.now = 6
    assert breaker.state is BreakerState.HALF_OPEN
    return breaker


async def test_probe_raising_a_non_http_error_frees_the_probe() -> None:
    clock = FakeClock()
    breaker = _opened_then_half_open(clock)

    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug on our side")

    client = ResilientClient(
        name="up", base_url="http://up", breaker=breaker, transport=httpx.MockTransport(explode)
    )
    with pytest.raises(RuntimeError):
        await client.request("GET", "/x")
    assert breaker.allow()  # the next call may probe
    await client.aclose()


async def test_cancelled_probe_frees_the_probe() -> None:
    import asyncio

    clock = FakeClock()
    breaker = _opened_then_half_open(clock)
    entered = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        entered.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    client = ResilientClient(
        name="up", base_url="http://up", breaker=breaker, transport=httpx.MockTransport(hang)
    )
    call = asyncio.create_task(client.request("GET", "/x"))
    await entered.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert breaker.allow()
    await client.aclose()
