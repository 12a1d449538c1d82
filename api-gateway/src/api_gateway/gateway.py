"""The gateway's long-lived parts, built in the lifespan and closed at shutdown: one pooled
client per upstream, the rate limiter's Redis, the merged docs, and the background loops that
re-resolve DNS, probe replicas and refresh the docs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskflow_kit.redis_client import create_redis, create_stream_redis
from taskflow_kit.resilience import CircuitBreaker
from taskflow_kit.revocation import RevocationList, RevocationListener

from api_gateway.client import UpstreamClient
from api_gateway.config import Settings
from api_gateway.exchange import RetryPolicy
from api_gateway.forwarding import Forwarder
from api_gateway.limits import GatewayRateLimits
from api_gateway.live import LiveHub
from api_gateway.openapi import Document, OpenAPIAggregator
from api_gateway.replicas import ReplicaSet, Resolver, resolve_host
from api_gateway.tokens import TokenGate
from api_gateway.upstreams import Upstream

logger = structlog.get_logger("api_gateway")


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        gateway_schema: Callable[[], Document],
        resolver: Resolver = resolve_host,
    ) -> None:
        self.settings = settings
        self.upstreams: dict[str, Upstream] = {}
        for name, urls in settings.upstream_urls().items():
            self.upstreams[name] = Upstream(
                name,
                ReplicaSet(name, urls, resolver=resolver),
                UpstreamClient(
                    connect_timeout=settings.connect_timeout,
                    read_timeout=settings.read_timeout,
                    max_connections_per_replica=settings.max_connections_per_replica,
                ),
                breaker=CircuitBreaker(
                    failure_threshold=settings.breaker_failures,
                    reset_timeout=settings.breaker_reset_seconds,
                ),
                probe_timeout=settings.connect_timeout + 1.0,
            )
        self.redis: Redis = create_redis(settings.redis_url, timeout=settings.redis_timeout)
        self.limits = GatewayRateLimits(
            self.redis,
            prefix=f"{settings.redis_prefix}gateway:rl:",
            per_user=settings.rate_limit_per_user,
            per_ip=settings.rate_limit_per_ip,
            window_seconds=settings.rate_limit_window_seconds,
            enabled=settings.rate_limit_enabled,
        )
        self.docs = OpenAPIAggregator(
            self.upstreams, gateway_schema, refresh_seconds=settings.openapi_refresh_seconds
        )
        for upstream in self.upstreams.values():
            upstream.on_replica_restored = self.docs.request_refresh
        # Live updates and revocation follow the streams on their own client: blocking reads
        # outlast the short timeout the rate limiter's client uses.
        self.stream_redis: Redis = create_stream_redis(settings.redis_url)
        self.revocations = RevocationList()
        tokens = TokenGate(settings.token_config(), self.revocations)
        self.live = LiveHub(
            self.stream_redis,
            key_prefix=settings.redis_prefix,
            verifier=tokens.verifier,
            queue_size=settings.ws_queue_size,
            heartbeat=settings.ws_heartbeat_seconds,
        )
        self.revocation_listener = RevocationListener(
            self.stream_redis,
            key_prefix=settings.redis_prefix,
            revocations=self.revocations,
            on_revoked=self.live.revoked,
        )
        self.forwarder = Forwarder(
            tokens=tokens,
            limits=self.limits,
            max_body_bytes=settings.max_body_bytes,
            policy=RetryPolicy(
                deadline=settings.deadline,
                retries=settings.retries,
                backoff=settings.retry_backoff_seconds,
                eject_after_5xx=settings.eject_after_5xx,
            ),
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = time.time()

    async def start(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.replicas.refresh_dns()
        self._spawn(self._every(self.settings.dns_refresh_seconds, self._refresh_dns))
        self._spawn(self._every(self.settings.health_interval_seconds, self._probe_replicas))
        self._spawn(self.docs.run())
        await self.revocation_listener.start()
        await self.live.start()
        self._spawn(self.revocation_listener.run())
        self._spawn(self.live.run())
        if self.limits.enabled:
            self._spawn(self.limits.run_flusher())

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for upstream in self.upstreams.values():
            await upstream.aclose()
        await self.limits.flush()
        await self.stream_redis.aclose()
        await self.redis.aclose()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coroutine))

    @staticmethod
    async def _every(interval: float, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            try:
                await job()
            except Exception:  # a background loop must outlive any one failure
                logger.exception("background_job_failed", job=job.__name__)
            await asyncio.sleep(interval)

    async def _refresh_dns(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.replicas.refresh_dns()

    async def _probe_replicas(self) -> None:
        await asyncio.gather(*(upstream.probe_all() for upstream in self.upstreams.values()))

    async def redis_status(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            return {"status": "down", "error": type(exc).__name__}
        return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
