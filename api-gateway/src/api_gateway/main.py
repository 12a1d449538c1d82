"""The api-gateway application: `uvicorn api_gateway.main:create_app --factory --port 8000`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware import Middleware
from taskflow_kit.app import create_service_app
from taskflow_kit.health import health_router
from taskflow_kit.metrics import RequestMetrics

from api_gateway.config import Settings
from api_gateway.gateway import Gateway
from api_gateway.live import live_route
from api_gateway.replicas import Resolver, resolve_host
from api_gateway.routing import ProxyDispatch, ProxyEdge
from api_gateway.security_headers import EdgeHeaders, SecurityHeaders
from api_gateway.status_page import metrics_route, status_router
from api_gateway.web import WebAssets, web_router

DESCRIPTION = """The single entry point of TaskFlow: every public route of user-service,
task-service and stats-service, under `/api/v1`. Sign in with **Authorize** (OAuth2 password
flow against `/api/v1/auth/login`).

**Live updates** — WebSocket `ws://<host>/api/v1/ws` (not an HTTP operation, so not listed
below). Authenticate with a first message `{"token": "..."}` within 10 s (not in the URL); a
bad, expired or revoked token closes the socket with 1008, a message over 8 KiB with 1009, a
user's 21st socket on one gateway with 4429. Messages (JSON):
`{"type": "ready", "user_id"}`, then every task event of tasks you own or are assigned to —
`{"id", "type": "task.created" | "task.updated" | "task.completed" | "task.assigned" |
"task.deleted", "occurred_at", "producer", "subject_id", "data": {"task": Task, "owner_id",
"assignee_id", "previous_assignee_id"}}` — `{"type": "task.access_lost", "subject_id"}` when you
are no longer the assignee, and `{"type": "heartbeat"}` every 20 s; send `{"type": "ping"}` for
`{"type": "pong"}`. 1013: you fell behind, reconnect and re-fetch. 1001: the gateway is stopping.
Revoked tokens (logout, deletion, deactivation, admin change, password change) answer 401
everywhere within 1 s."""

SERVICE = "api-gateway"
# Allocations between young-generation collections while serving (Python's default: 700).
GC_YOUNG_THRESHOLD = 10_000
CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "X-Request-ID",
]
CORS_EXPOSED_HEADERS = [
    "ETag",
    "Location",
    "X-Request-ID",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
]


def create_app(settings: Settings | None = None, *, resolver: Resolver = resolve_host) -> FastAPI:
    settings = settings or Settings()
    settings.configure_observability(SERVICE)
    # Built with the app (no I/O until started), so every route is handed its part of it once.
    gateway = Gateway(settings, gateway_schema=lambda: own_schema(app), resolver=resolver)
    assets = WebAssets(watch=settings.environment == "development")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        assets.load()
        await gateway.start()
        watcher = assets.watch_task()
        with settled_garbage_collector():
            try:
                yield
            finally:
                if watcher is not None:
                    watcher.cancel()
                await gateway.aclose()

    app = create_service_app(
        service=SERVICE,
        title="TaskFlow API",
        version="1.0.0",
        description=DESCRIPTION,
        token_config=settings.token_config(),
        lifespan=lifespan,
        redirect_slashes=False,
        # The gateway's `/metrics` first, in place of the kit's open one. Proxied prefixes are
        # not routes: ProxyDispatch (below) hands them to their forwarders before the router.
        routes=[metrics_route(gateway), live_route(gateway.live)],
        # TaskFlow configures no OpenTelemetry provider, and FastAPI's per-request check of the
        # global providers (environment lookups) cost ~6% of the gateway's CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.gateway = gateway  # for tests and operators' introspection; no request reads it

    app.include_router(health_router({"redis": gateway.redis_ready}))
    app.include_router(status_router(gateway))
    app.include_router(web_router(assets))
    app.openapi = gateway.docs.document  # type: ignore[method-assign]

    origins = settings.cors_origin_list()
    security = SecurityHeaders(settings.hsts_seconds)
    # Outermost of the stack: CORS preflights and errors get the security headers too.
    app.add_middleware(
        EdgeHeaders,
        security=security,
        allow_origins=origins,
        allow_credentials="*" not in origins,
        allow_methods=CORS_METHODS,
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
        max_age=600,
    )
    # Innermost (inside the kit's request-id and problem+json middlewares): the proxied
    # prefixes go straight to their forwarders, past FastAPI's router and exception layers.
    app.user_middleware.append(Middleware(ProxyDispatch, forwarders=gateway.forwarders))
    # Outside the whole stack (FastAPI's own layers included): proxied requests without an
    # Origin, nearly all traffic, are served by one layer that does what the stack's layers do
    # for them (routing.ProxyEdge). Starlette builds the stack on the first request.
    build_stack = app.build_middleware_stack

    def build_edge() -> ProxyEdge:
        return ProxyEdge(
            build_stack(),
            forwarders=gateway.forwarders,
            security=security,
            metrics=RequestMetrics(SERVICE),
        )

    app.build_middleware_stack = build_edge  # type: ignore[method-assign]
    return app


@contextmanager
def settled_garbage_collector() -> Iterator[None]:
    """While the gateway serves: what start-up built (the app, its schemas, every module) is
    frozen out of the cyclic collector's scans, and young collections run every
    `GC_YOUNG_THRESHOLD` allocations instead of 700. A proxied request allocates a few hundred
    short-lived objects (freed by reference counting, not by the collector), so with Python's
    defaults a collection ran every other request and re-scanned the whole heap every few
    hundred: 10-12% of the gateway's CPU under load (py-spy, docs/gateway.md). Undone at
    shutdown, so a process that builds many apps (the tests) collects them as usual."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def own_schema(app: FastAPI) -> dict[str, Any]:
    """The gateway's own routes (health, status) as an OpenAPI document."""
    return get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
