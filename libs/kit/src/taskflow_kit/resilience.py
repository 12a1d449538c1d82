"""Circuit breaker and a resilient HTTP client for service-to-service calls."""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from taskflow_kit import tracing
from taskflow_kit.context import current_request_id
from taskflow_kit.errors import ServiceUnavailable


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_timeout` seconds one
    probe is let through (half-open): success closes it, failure opens it again."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_timeout:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_after(self) -> int:
        if self._opened_at is None:
            return 0
        return max(1, int(self.reset_timeout - (self._clock() - self._opened_at)) + 1)

    def allow(self) -> bool:
        """May a call go through now? In half-open, only one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_in_flight = False

    def release(self) -> None:
        """The call let through ended without a verdict on the upstream (cancelled, or failed
        on our side): free the half-open probe slot so the next call can probe."""
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()


class UpstreamUnavailable(ServiceUnavailable):
    title = "Service Unavailable"


_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ResilientClient:
    """httpx client for one upstream: timeouts, retries on connect errors, circuit breaker.

    Failures surface as `UpstreamUnavailable` (503 with `Retry-After`), never as a guess.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        connect_timeout: float = 1.0,
        read_timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.05,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.breaker = breaker or CircuitBreaker()
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        if not self.breaker.allow():
            raise UpstreamUnavailable(
                f"{self.name} is unavailable (circuit open)", retry_after=self.breaker.retry_after()
            )
        merged = dict(headers or {})
        request_id = current_request_id()
        if request_id:
            merged.setdefault("X-Request-ID", request_id)
        if "traceparent" not in merged:
            tracing.inject_headers(merged)
        try:
            return await self._send(method, url, merged, kwargs)
        except BaseException:
            # Cancelled, or an error that says nothing about the upstream (an UpstreamUnavailable
            # has already recorded its failure): never leave the half-open probe taken.
            self.breaker.release()
            raise

    async def _send(
        self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any]
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._client.request(method, url, headers=headers, **kwargs)
            except _RETRYABLE as exc:
                # The request never reached the upstream, so trying again is safe.
                if attempt < self.retries:
                    attempt += 1
                    await asyncio.sleep(self.backoff * (2**attempt) * random.uniform(0.5, 1.5))
                    continue
                self.breaker.record_failure()
                raise UpstreamUnavailable(f"{self.name} is unreachable") from exc
            except httpx.HTTPError as exc:
                self.breaker.record_failure()
                raise UpstreamUnavailable(f"{self.name} did not answer in time") from exc
            if response.status_code >= 500:
                self.breaker.record_failure()
                raise UpstreamUnavailable(f"{self.name} failed ({response.status_code})")
            self.breaker.record_success()
            return response
