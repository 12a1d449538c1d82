"""One upstream service: its replicas, its circuit breaker and its pooled HTTP client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from taskflow_kit.resilience import CircuitBreaker

from api_gateway.client import UpstreamClient, UpstreamError
from api_gateway.replicas import Replica, ReplicaSet

logger = structlog.get_logger("api_gateway.upstreams")


class Upstream:
    """A named service behind the gateway."""

    def __init__(
        self,
        name: str,
        replicas: ReplicaSet,
        client: UpstreamClient,
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
        await self.client.aclose()

    async def probe(self, replica: Replica) -> None:
        """GET /health on one replica and apply the result."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.probe_timeout):
                status, _ = await self.client.get(replica.host, replica.port, "/health")
        except (UpstreamError, TimeoutError) as exc:
            if isinstance(exc, UpstreamError) and not exc.replica_at_fault:
                return  # every connection busy with live traffic: busy is not down
            reason = exc.kind.value if isinstance(exc, UpstreamError) else "timeout"
            replica.probe_result(ok=False, latency_ms=None, error=f"health probe: {reason}")
            return
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        ok = status < 500
        error = None if ok else f"health answered {status}"
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
