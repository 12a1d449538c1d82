"""Which upstream serves a path: the route table, and the two places that hand each public
prefix to its upstream's forwarder: `ProxyEdge`, the app's outermost layer, for the common case,
and `ProxyDispatch`, inside the middleware stack, for cross-origin requests."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from taskflow_kit.errors import answer_error
from taskflow_kit.logs import RequestContext
from taskflow_kit.metrics import RequestMetrics

from api_gateway.security_headers import SecurityHeaders, has_origin

# Public prefixes and the upstream behind each. `/internal/...` is deliberately absent.
ROUTES: dict[str, str] = {
    "/api/v1/auth": "user-service",
    "/api/v1/users": "user-service",
    "/api/v1/tasks": "task-service",
    "/api/v1/projects": "task-service",
    "/api/v1/stats": "stats-service",
}
_COMMON = "/api/v1/"  # what every prefix starts with: other paths are not looked up
_SEGMENT = len(_COMMON)


def _by_segment(routes: Mapping[str, str]) -> dict[str, str]:
    """Each public prefix by its one segment under `/api/v1/`: a path's prefix is then one
    dictionary lookup of its third segment, not a scan of the prefixes per request."""
    found: dict[str, str] = {}
    for prefix in routes:
        segment = prefix[_SEGMENT:]
        if not prefix.startswith(_COMMON) or not segment or "/" in segment:
            raise ValueError(f"{prefix}: a public prefix is one segment under {_COMMON}")
        found[segment] = prefix
    return found


_PREFIXES = _by_segment(ROUTES)


def match_prefix(path: str) -> str | None:
    """The public prefix a decoded request path falls under (whole segments: `/api/v1/tasksx`
    is not `/api/v1/tasks`), or None: not routed, 404."""
    if not path.startswith(_COMMON):
        return None
    return _PREFIXES.get(path[_SEGMENT:].partition("/")[0])


def upstream_for(path: str) -> str | None:
    """The upstream serving a decoded request path, or None (not routed: 404)."""
    prefix = match_prefix(path)
    return None if prefix is None else ROUTES[prefix]


class ProxyRoute:
    """One public prefix (with or without trailing slash, and everything below it) and the
    forwarder of its upstream. Put in the scope as `route`: its `path` is the metrics label
    (bounded: a prefix, never the raw path)."""

    __slots__ = ("forward", "path")

    def __init__(self, prefix: str, forward: ASGIApp) -> None:
        self.path = prefix
        self.forward = forward


def proxy_routes(forwarders: Mapping[str, ASGIApp]) -> dict[str, ProxyRoute]:
    """Each public prefix with the forwarder of its upstream (`forwarders` by upstream name)."""
    return {prefix: ProxyRoute(prefix, forwarders[upstream]) for prefix, upstream in ROUTES.items()}


class ProxyEdge:
    """The outermost layer of the gateway's app. An HTTP request under a public prefix without
    an `Origin` header (scripts, services, the web app on its own origin: nearly all traffic)
    is served here, in one layer, top to bottom:

    1. its request context: request id, trace context, then metrics and the access line when it
       ends (the kit's `RequestContext`, what `RequestContextMiddleware` does for the rest);
    2. its forwarder (checks, upstream exchange, relay: api_gateway.forwarding);
    3. the answer's headers as every answer leaves the gateway: the request id, `Vary: Origin`
       and the security headers (`SecurityHeaders`, what `EdgeHeaders` does for the rest);
    4. the error boundary: a refusal raised before the answer started becomes problem+json
       (the kit's `answer_error`, what `ProblemMiddleware` does for the rest).

    Everything else goes to the app's middleware stack: the gateway's own routes, WebSockets,
    and cross-origin requests, which need Starlette's CORS middleware and reach the same
    forwarders through `ProxyDispatch`. The two ways give a proxied request the same answer;
    this one skips five layers and four send wrappers (≈ 6% of the gateway's instructions per
    request, docs/gateway.md)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        forwarders: Mapping[str, ASGIApp],
        security: SecurityHeaders,
        metrics: RequestMetrics,
    ) -> None:
        self.app = app
        self.routes = proxy_routes(forwarders)
        self.security = security
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or has_origin(scope["headers"]):
            await self.app(scope, receive, send)
            return
        prefix = match_prefix(scope["path"])
        if prefix is None:
            await self.app(scope, receive, send)
            return
        route = scope["route"] = self.routes[prefix]
        context = RequestContext(scope, scope["method"])
        answered = False

        async def send_answer(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                context.status = message["status"]
                message["headers"] = self.security.apply(
                    message.get("headers", ()), vary=True, request_id=context.header
                )
            await send(message)

        try:
            await route.forward(scope, receive, send_answer)
        except Exception as exc:
            await answer_error(exc, scope, receive, send_answer, started=answered)
        finally:
            context.finish(metrics=self.metrics, route=route, log=True)


class ProxyDispatch:
    """The innermost middleware of the gateway's app: an HTTP request under a public prefix
    that reached the middleware stack (a cross-origin one: `ProxyEdge` serves the others) goes
    straight to its forwarder; anything else (the gateway's own routes, WebSockets) continues
    to FastAPI's router.

    Installed inside the middlewares every answer needs (security headers, CORS, request id,
    trace context, access line, metrics, problem+json rendering), so a proxied request still
    gets all of them, but skips what only FastAPI routes need: Starlette's exception
    middleware, FastAPI's exit stack and the router's scan of every route."""

    def __init__(self, app: ASGIApp, *, forwarders: Mapping[str, ASGIApp]) -> None:
        self.app = app
        self.routes = proxy_routes(forwarders)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix = match_prefix(scope["path"])
            if prefix is not None:
                route = self.routes[prefix]
                scope["route"] = route
                await route.forward(scope, receive, send)
                return
        await self.app(scope, receive, send)
