"""One upstream service: its replicas, its circuit breaker and its pooled HTTP client."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

import aiohttp
import structlog
from taskflow_kit.resilience import CircuitBreaker

from api_gateway.replicas import Replica, ReplicaSet

logger = structlog.get_logger("api_gateway.upstreams")


class FailureKind(enum.Enum):
    """Where an attempt failed, which decides whether it may be retried."""

    CONNECT = "connect"  # no connection: not a byte of the request was sent
    DISCONNECT = "disconnect"  # connection lost before a response: may have been processed
    TIMEOUT = "timeout"  # sent, no answer within the read timeout
    PROTOCOL = "protocol"  # the upstream answered something that is not HTTP


TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


def classify(exc: BaseException) -> FailureKind:
    """What a transport exception means for retries and ejection."""
    # Order matters: aiohttp's connect errors subclass its generic connection errors, and its
    # connect timeout subclasses its read timeout.
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return FailureKind.CONNECT
    if isinstance(exc, asyncio.TimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(exc, aiohttp.ClientResponseError):
        return FailureKind.PROTOCOL
    return FailureKind.DISCONNECT


def create_client(*, max_connections: int) -> aiohttp.ClientSession:
    """One pooled client per upstream. aiohttp rather than httpx: on this hot path httpx
    (even over aiohttp's transport) costs 2-4x the CPU per request (docs/gateway.md)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, keepalive_timeout=30, use_dns_cache=False
        ),
        # A proxy must never remember one user's cookies and replay them for another.
        cookie_jar=aiohttp.DummyCookieJar(),
        # The client's own headers are forwarded; aiohttp must not invent Accept-Encoding etc.
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        auto_decompress=False,
        trust_env=False,
    )


class Upstream:
    """A named service behind the gateway."""

    def __init__(
        self,
        name: str,
        replicas: ReplicaSet,
        client: aiohttp.ClientSession,
        *,
        breaker: CircuitBreaker,
        probe_timeout: float = 2.0,
        on_replica_restored: Callable[[Upstream], None] | None = None,
    ) -> None:
        self.name = name
        self.replicas = replicas
        self.client = client
        self.breaker = breaker
        self.probe_timeout = probe_timeout
        self.on_replica_restored = on_replica_restored

    async def aclose(self) -> None:
        await self.client.close()

    async def probe(self, replica: Replica) -> None:
        """GET /health on one replica and apply the result."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.probe_timeout):
                async with self.client.get(f"{replica.base_url}/health") as response:
                    await response.read()
        except TRANSPORT_ERRORS as exc:
            replica.probe_result(ok=False, latency_ms=None, error=type(exc).__name__)
            return
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        ok = response.status < 500
        error = None if ok else f"health answered {response.status}"
        came_back = replica.probe_result(ok=ok, latency_ms=latency_ms, error=error)
        if came_back and self.on_replica_restored:
            self.on_replica_restored(self)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(replica) for replica in list(self.replicas.replicas)))

    def status(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "circuit": self.breaker.state.value,
            "retry_after": self.breaker.retry_after() or None,
            "dns_error": self.replicas.dns_error,
            "replicas": [
                {
                    "url": replica.base_url,
                    "configured_as": replica.source,
                    "state": replica.state.value,
                    "latency_ms": replica.probe_latency_ms,
                    "in_flight": replica.in_flight,
                    "last_error": replica.last_error,
                    "state_for_seconds": round(now - replica.changed_at, 1),
                }
                for replica in self.replicas.replicas
            ],
        }
