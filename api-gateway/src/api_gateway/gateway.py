"""The gateway's long-lived parts, built with the app, started in its lifespan and closed at
shutdown: one pooled client per upstream and the forwarder in front of it, the rate limiter's
Redis, the token gate, the merged docs, live updates, and the background loops that re-resolve
DNS, probe replicas and refresh the docs. It also answers what the status page asks: whether a
caller is an operator, and the status document."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import time
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskflow_kit.background import every, running
from taskflow_kit.consumer import events_report
from taskflow_kit.events import TASK_STREAM, USER_STREAM
from taskflow_kit.redis_client import create_redis, create_stream_redis
from taskflow_kit.resilience import CircuitBreaker
from taskflow_kit.revocation import RevocationList, RevocationListener

from api_gateway.client import UpstreamClient
from api_gateway.config import Settings
from api_gateway.exchange import RetryPolicy
from api_gateway.forwarded import TrustedProxies
from api_gateway.forwarding import Forwarder
from api_gateway.limits import GatewayRateLimits
from api_gateway.live import LiveHub
from api_gateway.openapi import Document, OpenAPIAggregator
from api_gateway.replicas import ReplicaSet, Resolver, resolve_host
from api_gateway.tokens import TokenGate, bearer_credentials
from api_gateway.upstreams import Upstream

logger = structlog.get_logger("api_gateway")

# The consumer groups of the services (task-service reads user.*, stats-service task.*).
EVENT_CONSUMER_GROUPS = ("task-service", "stats-service")


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
        self.tokens = TokenGate(settings.token_config(), self.revocations)
        self.live = LiveHub(
            self.stream_redis,
            key_prefix=settings.redis_prefix,
            verifier=self.tokens.verifier,
            queue_size=settings.ws_queue_size,
            heartbeat=settings.ws_heartbeat_seconds,
            max_message_bytes=settings.ws_max_message_bytes,
            max_sockets_per_user=settings.ws_max_sockets_per_user,
            query_token=settings.ws_query_token,
        )
        self.revocation_listener = RevocationListener(
            self.stream_redis,
            key_prefix=settings.redis_prefix,
            revocations=self.revocations,
            on_revoked=self.live.revoked,
        )
        policy = RetryPolicy(
            deadline=settings.deadline,
            retries=settings.retries,
            backoff=settings.retry_backoff_seconds,
            eject_after_5xx=settings.eject_after_5xx,
        )
        proxies = TrustedProxies(settings.trusted_proxy_networks())
        self.forwarders = {
            name: Forwarder(
                upstream,
                tokens=self.tokens,
                limits=self.limits,
                max_body_bytes=settings.max_body_bytes,
                policy=policy,
                proxies=proxies,
            )
            for name, upstream in self.upstreams.items()
        }
        self._background = contextlib.AsyncExitStack()

    async def start(self) -> None:
        await self._refresh_dns()
        await self.revocation_listener.start()
        await self.live.start()
        jobs = [
            every(self.settings.dns_refresh_seconds, self._refresh_dns, name="refresh_dns"),
            self._probing(),
            self.docs.run(),
            self.revocation_listener.run(),
            self.live.run(),
        ]
        if self.limits.enabled:
            jobs.append(self.limits.run_flusher())
        # The kit's runner: cancelled at `aclose`, a stuck loop waited for at most a few seconds.
        await self._background.enter_async_context(running(*jobs))

    async def aclose(self) -> None:
        await self._background.aclose()
        for upstream in self.upstreams.values():
            await upstream.aclose()
        await self.limits.flush()
        await self.stream_redis.aclose()
        await self.redis.aclose()

    async def _probing(self) -> None:
        """Every replica probed at once, then every `health_interval_seconds` (the kit's loop:
        a failed round is logged and the next one happens)."""
        try:
            await self._probe_replicas()
        except Exception:
            logger.exception("periodic_job_failed", job="probe_replicas")
        await every(
            self.settings.health_interval_seconds, self._probe_replicas, name="probe_replicas"
        )

    async def _refresh_dns(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.replicas.refresh_dns()

    async def _probe_replicas(self) -> None:
        await asyncio.gather(*(upstream.probe_all() for upstream in self.upstreams.values()))

    async def redis_ready(self) -> None:
        """Readiness: the rate limiter's Redis answers (raises otherwise)."""
        await self.redis.ping()

    # -- what the status page asks -----------------------------------------------------------

    def is_operator(
        self, authorization: str | None, client_host: str | None, *, admin_token_counts: bool
    ) -> bool:
        """Whether a caller may see operational detail: the monitoring token, a loopback client
        where loopback is trusted, or (with `admin_token_counts`) a valid administrator's
        access token (every check of the token gate applies: a bad token is 401)."""
        expected = self.settings.monitoring_token()
        credentials = bearer_credentials(authorization)
        if (
            credentials is not None
            and expected is not None
            and hmac.compare_digest(credentials.encode(), expected.encode())
        ):
            return True
        if self.settings.loopback_is_trusted() and _is_loopback(client_host):
            return True
        if admin_token_counts and authorization:
            return self.tokens.is_admin(authorization.encode("latin-1"))
        return False

    async def status(self, *, detail: bool) -> dict[str, Any]:
        """The status document: the summary, and with `detail` every section operators need (add
        a section here: one key per concern)."""
        upstreams = {name: upstream.status() for name, upstream in self.upstreams.items()}
        health = {name: upstream_health(info) for name, info in upstreams.items()}
        overall = "ok" if all(state == "up" for state in health.values()) else "degraded"
        if not detail:
            return {"status": overall, "upstreams": health}
        for name, info in upstreams.items():
            info["health"] = health[name]
        return {
            "status": overall,
            "upstreams": upstreams,
            "redis": await self._redis_status(),
            "rate_limiter": self.limits.status(),
            "docs": self.docs.status(),
            "events": await self._events_status(),
        }

    async def _redis_status(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            return {"status": "down", "error": type(exc).__name__}
        return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    async def _events_status(self) -> dict[str, Any]:
        """Streams, consumer lag, dead letters and outbox backlogs (from Redis), the live sockets
        and the revocation list (from this replica)."""
        local = {
            "live": self.live.status(),
            "revocations": {
                "loaded": self.revocation_listener.loaded,
                "users": len(self.revocations.users),
                "sessions": len(self.revocations.sessions),
            },
        }
        try:
            report = await events_report(
                self.redis,
                key_prefix=self.settings.redis_prefix,
                streams=[USER_STREAM, TASK_STREAM],
                groups=EVENT_CONSUMER_GROUPS,
            )
        except (RedisError, OSError) as exc:
            return {"status": "unavailable", "error": type(exc).__name__, **local}
        dead = sum(report["dead_letters"].values())
        return {"status": "ok" if dead == 0 else "dead_letters", **report, **local}


def upstream_health(info: dict[str, Any]) -> str:
    """`up` (closed circuit, every replica up), `down` (open circuit or no replica up),
    `degraded` otherwise."""
    states = [replica["state"] for replica in info["replicas"]]
    if info["circuit"] == "open" or "up" not in states:
        return "down"
    if info["circuit"] != "closed" or any(state != "up" for state in states):
        return "degraded"
    return "up"


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
