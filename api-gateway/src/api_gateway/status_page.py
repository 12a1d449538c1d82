"""`/api/status` and the gateway's `/metrics`: a summary for everyone, the detail for operators.

The public sees whether the API is up and, per upstream, `up`, `degraded` or `down`. The detail
(replica addresses, their errors and requests in flight, Redis, the rate limiter, the docs) is
for operators: a valid access token whose `is_superuser` claim is true, or the monitoring
bearer token `GATEWAY_METRICS_TOKEN`. `/metrics` is served only with that token (404 without
one configured). With `GATEWAY_TRUST_LOOPBACK=true` (set by `make run` only; off by default in
every environment) clients on the loopback interface count as operators too. Who is an
operator and what the document holds are the gateway's answers (`Gateway.is_operator`,
`Gateway.status`); this module is their HTTP side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from taskflow_kit.errors import NotFound

if TYPE_CHECKING:
    from api_gateway.gateway import Gateway


def _caller(request: Request) -> tuple[str | None, str | None]:
    return request.headers.get("authorization"), request.client.host if request.client else None


def status_router(gateway: Gateway) -> APIRouter:
    """`GET /api/status`, answered by `gateway`."""
    router = APIRouter(tags=["gateway"])

    @router.get("/api/status")
    async def gateway_status(request: Request) -> dict[str, Any]:
        """Whether the API is up: `status` (`ok`, or `degraded` when an upstream is not fully
        up) and each upstream's health (`up`, `degraded`: a replica is out or the circuit is
        testing recovery, `down`: no replica up or the circuit open).

        Operators (an administrator's access token, or the monitoring token) also get each
        upstream's circuit and replicas (address, state, probe latency, requests in flight,
        last error), Redis, the rate limiter's mode and the merged docs' freshness."""
        authorization, client_host = _caller(request)
        detail = gateway.is_operator(authorization, client_host, admin_token_counts=True)
        return await gateway.status(detail=detail)

    return router


def metrics_route(gateway: Gateway) -> APIRoute:
    """`GET /metrics`, for the monitoring token only (404 for everyone else). Goes ahead of the
    kit's own `/metrics` route in the gateway's router, which it replaces."""

    async def metrics(request: Request) -> Response:
        """Prometheus exposition, for the monitoring token only (404 for everyone else)."""
        authorization, client_host = _caller(request)
        if not gateway.is_operator(authorization, client_host, admin_token_counts=False):
            raise NotFound("Not Found")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return APIRoute("/metrics", metrics, include_in_schema=False)
