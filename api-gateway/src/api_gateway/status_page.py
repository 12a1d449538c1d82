"""`/api/status` and the gateway's `/metrics`: a summary for everyone, the detail for operators.

The public sees whether the API is up and, per upstream, `up`, `degraded` or `down`. The detail
(replica addresses, their errors and requests in flight, Redis, the rate limiter, the docs) is
for operators: a valid access token whose `is_superuser` claim is true, or the monitoring
bearer token `GATEWAY_METRICS_TOKEN`. `/metrics` is served only with that token (404 without
one configured). Outside production, clients on the loopback interface count as operators too
(`GATEWAY_TRUST_LOOPBACK`), so `make run` and the whole-suite tests see everything.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from taskflow_kit.consumer import events_report
from taskflow_kit.errors import NotFound
from taskflow_kit.events import TASK_STREAM, USER_STREAM

if TYPE_CHECKING:
    from api_gateway.gateway import Gateway

# The consumer groups of the services (task-service reads user.*, stats-service task.*).
EVENT_CONSUMER_GROUPS = ("task-service", "stats-service")

router = APIRouter(tags=["gateway"])


def is_operator(gateway: Gateway, request: Request, *, admin_token_counts: bool) -> bool:
    """Whether this request may see operational detail."""
    authorization = request.headers.get("authorization")
    expected = gateway.settings.monitoring_token()
    if authorization and expected is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), expected.encode()
        ):
            return True
    if gateway.settings.loopback_is_trusted() and _from_loopback(request):
        return True
    if admin_token_counts and authorization:
        return gateway.forwarder.tokens.is_admin(authorization.encode("latin-1"))
    return False


def _from_loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def upstream_health(info: dict[str, Any]) -> str:
    """`up` (closed circuit, every replica up), `down` (open circuit or no replica up),
    `degraded` otherwise."""
    states = [replica["state"] for replica in info["replicas"]]
    if info["circuit"] == "open" or "up" not in states:
        return "down"
    if info["circuit"] != "closed" or any(state != "up" for state in states):
        return "degraded"
    return "up"


async def build_status(gateway: Gateway, *, detail: bool) -> dict[str, Any]:
    """The status document: the summary, and with `detail` every section operators need (add
    a section here: one key per concern)."""
    upstreams = {name: upstream.status() for name, upstream in gateway.upstreams.items()}
    health = {name: upstream_health(info) for name, info in upstreams.items()}
    overall = "ok" if all(state == "up" for state in health.values()) else "degraded"
    if not detail:
        return {"status": overall, "upstreams": health}
    for name, info in upstreams.items():
        info["health"] = health[name]
    limits = gateway.limits
    return {
        "status": overall,
        "upstreams": upstreams,
        "redis": await gateway.redis_status(),
        "rate_limiter": {
            "mode": limits.mode.value,
            "per_user": limits.per_user,
            "per_ip": limits.per_ip,
            "window_seconds": limits.window,
        },
        "docs": gateway.docs.status(),
        "events": await events_status(gateway),
    }


async def events_status(gateway: Gateway) -> dict[str, Any]:
    """Streams, consumer lag, dead letters and outbox backlogs (from Redis), the live sockets
    and the revocation list (from this replica)."""
    local = {
        "live": {
            "connections": sum(len(group) for group in gateway.live.connections.values()),
            "following": gateway.live.tail.healthy,
        },
        "revocations": {
            "loaded": gateway.revocation_listener.loaded,
            "users": len(gateway.revocations.users),
            "sessions": len(gateway.revocations.sessions),
        },
    }
    try:
        report = await events_report(
            gateway.redis,
            key_prefix=gateway.settings.redis_prefix,
            streams=[USER_STREAM, TASK_STREAM],
            groups=EVENT_CONSUMER_GROUPS,
        )
    except (RedisError, OSError) as exc:
        return {"status": "unavailable", "error": type(exc).__name__, **local}
    dead = sum(report["dead_letters"].values())
    return {"status": "ok" if dead == 0 else "dead_letters", **report, **local}


@router.get("/api/status")
async def gateway_status(request: Request) -> dict[str, Any]:
    """Whether the API is up: `status` (`ok`, or `degraded` when an upstream is not fully up)
    and each upstream's health (`up`, `degraded`: a replica is out or the circuit is testing
    recovery, `down`: no replica up or the circuit open).

    Operators (an administrator's access token, or the monitoring token) also get each
    upstream's circuit and replicas (address, state, probe latency, requests in flight, last
    error), Redis, the rate limiter's mode and the merged docs' freshness."""
    gateway: Gateway = request.app.state.gateway
    detail = is_operator(gateway, request, admin_token_counts=True)
    return await build_status(gateway, detail=detail)


async def metrics(request: Request) -> Response:
    """Prometheus exposition, for the monitoring token only (404 for everyone else)."""
    gateway: Gateway = request.app.state.gateway
    if not is_operator(gateway, request, admin_token_counts=False):
        raise NotFound("Not Found")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# Ahead of the kit's own `/metrics` route in the gateway's router, which it replaces.
metrics_route = APIRoute("/metrics", metrics, include_in_schema=False)
