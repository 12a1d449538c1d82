"""Replicas of one upstream: where they are (configured URLs and DNS), which may take traffic,
and how the next one is chosen (least outstanding requests, round-robin among equals)."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import structlog

from api_gateway.client import base_url

logger = structlog.get_logger("api_gateway.replicas")

Resolver = Callable[[str, int], Awaitable[list[str]]]


class ReplicaState(enum.StrEnum):
    UP = "up"
    DOWN = "down"  # the last health probe failed
    EJECTED = "ejected"  # taken out by live traffic; a passing health probe brings it back


@dataclass(eq=False)
class Replica:
    """One address of an upstream, with the state the balancer and `/api/status` need."""

    base_url: str  # scheme://host:port, never a path
    source: str  # the configured URL it came from
    host: str  # address to connect to (no brackets around IPv6)
    port: int
    state: ReplicaState = ReplicaState.UP
    in_flight: int = 0
    consecutive_5xx: int = 0
    last_error: str | None = None
    probe_latency_ms: float | None = None
    changed_at: float = field(default_factory=time.monotonic)

    @property
    def routable(self) -> bool:
        return self.state is ReplicaState.UP

    def eject(self, reason: str) -> None:
        if self.state is ReplicaState.UP:
            logger.warning("replica_ejected", replica=self.base_url, reason=reason)
            self.state = ReplicaState.EJECTED
            self.changed_at = time.monotonic()
        self.last_error = reason

    def record_status(self, status: int, *, eject_after_5xx: int) -> None:
        """Passive health from live responses: N consecutive 5xx take the replica out."""
        if status >= 500:
            self.consecutive_5xx += 1
            if self.consecutive_5xx >= eject_after_5xx:
                self.eject(f"{self.consecutive_5xx} consecutive {status} responses")
        else:
            self.consecutive_5xx = 0

    def probe_result(self, *, ok: bool, latency_ms: float | None, error: str | None) -> bool:
        """Apply an active health probe; True when the replica came back into rotation."""
        self.probe_latency_ms = latency_ms
        if ok:
            came_back = self.state is not ReplicaState.UP
            if came_back:
                logger.info("replica_restored", replica=self.base_url)
                self.state = ReplicaState.UP
                self.consecutive_5xx = 0
                self.changed_at = time.monotonic()
            return came_back
        self.last_error = error
        if self.state is not ReplicaState.DOWN:
            logger.warning("replica_down", replica=self.base_url, error=error)
            self.state = ReplicaState.DOWN
            self.changed_at = time.monotonic()
        return False


@dataclass(frozen=True, slots=True)
class ConfiguredURL:
    scheme: str
    host: str
    port: int
    raw: str

    @classmethod
    def parse(cls, url: str) -> ConfiguredURL:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            # Upstreams are internal services on a private network: plain HTTP only.
            raise ValueError(f"not an http:// base URL: {url!r}")
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise ValueError(f"an upstream URL carries no path (the gateway never rewrites): {url}")
        port = parts.port or 80
        return cls(parts.scheme, parts.hostname, port, url)

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the replicas behind a compose service name)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class ReplicaSet:
    """The replicas of one upstream and the choice of the next one."""

    def __init__(
        self, name: str, urls: Iterable[str], *, resolver: Resolver = resolve_host
    ) -> None:
        self.name = name
        self.configured = [ConfiguredURL.parse(url) for url in urls]
        if not self.configured:
            raise ValueError(f"{name}: at least one replica URL is required")
        self._resolver = resolver
        self.replicas: list[Replica] = [
            Replica(base_url(c.scheme, c.host, c.port), c.raw, c.host, c.port)
            for c in self.configured
            if c.is_ip
        ]
        self._next = 0
        self.dns_error: str | None = None

    @property
    def uses_dns(self) -> bool:
        return any(not c.is_ip for c in self.configured)

    async def refresh_dns(self) -> None:
        """Re-resolve host names; keep the state of replicas whose address did not change.

        A failed lookup keeps the previous addresses of that name (last known good)."""
        if not self.uses_dns:
            return
        by_url = {replica.base_url: replica for replica in self.replicas}
        wanted: list[Replica] = []
        errors: list[str] = []
        for configured in self.configured:
            if configured.is_ip:
                addresses = [configured.host]
            else:
                try:
                    addresses = await self._resolver(configured.host, configured.port)
                except OSError as exc:
                    errors.append(f"{configured.host}: {exc}")
                    wanted.extend(r for r in self.replicas if r.source == configured.raw)
                    continue
            for address in addresses:
                url = base_url(configured.scheme, address, configured.port)
                replica = by_url.get(url) or Replica(url, configured.raw, address, configured.port)
                if replica not in wanted:
                    wanted.append(replica)
        self.dns_error = "; ".join(errors) or None
        if [r.base_url for r in wanted] != [r.base_url for r in self.replicas]:
            logger.info(
                "replicas_changed", upstream=self.name, replicas=[r.base_url for r in wanted]
            )
        self.replicas = wanted

    def any_routable(self) -> bool:
        return any(replica.routable for replica in self.replicas)

    def pick(self, exclude: Iterable[Replica] = ()) -> Replica | None:
        """The routable replica with the fewest requests in flight (round-robin among equals).

        Replicas in `exclude` (already tried) are avoided while others exist. When no replica
        is routable, all are candidates: the breaker, not an empty pool, decides to fail fast,
        and a restarted replica is found without waiting for the next probe."""
        excluded = set(exclude)
        candidates = [r for r in self.replicas if r.routable and r not in excluded]
        if not candidates:
            candidates = [r for r in self.replicas if r not in excluded]
        if not candidates:
            candidates = [r for r in self.replicas if r.routable] or list(self.replicas)
        if not candidates:
            return None
        count = len(candidates)
        start = self._next % count
        self._next += 1
        best = candidates[start]
        for offset in range(1, count):
            candidate = candidates[(start + offset) % count]
            if candidate.in_flight < best.in_flight:
                best = candidate
        return best
