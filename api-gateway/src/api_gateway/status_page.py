"""`/api/status`: what the gateway knows about every upstream, replica, Redis and its limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(tags=["gateway"])


@router.get("/api/status")
async def gateway_status(request: Request) -> dict[str, Any]:
    """Every upstream with its circuit state and replicas (up, down or ejected, probe latency,
    requests in flight), Redis, the rate limiter's mode and the merged docs' freshness.

    `status` is `ok` when every upstream has a routable replica and a closed circuit,
    `degraded` otherwise."""
    gateway = request.app.state.gateway
    upstreams = {name: upstream.status() for name, upstream in gateway.upstreams.items()}
    healthy = all(
        info["circuit"] == "closed"
        and any(replica["state"] == "up" for replica in info["replicas"])
        for info in upstreams.values()
    )
    limits = gateway.limits
    redis = await gateway.redis_status()
    return {
        "status": "ok" if healthy else "degraded",
        "upstreams": upstreams,
        "redis": redis,
        "rate_limiter": {
            "mode": limits.mode.value,
            "per_user": limits.per_user,
            "per_ip": limits.per_ip,
            "window_seconds": limits.window,
        },
        "docs": gateway.docs.status(),
    }
