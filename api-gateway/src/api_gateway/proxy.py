"""The forwarding path: a raw ASGI route per public prefix, in front of a pooled client.

Raw ASGI rather than a catch-all FastAPI endpoint: no request parsing, no dependency
resolution and no Response object per request; bodies stream through untouched.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import ASGIApp, Receive, Scope, Send
from taskflow_kit.context import current_request_id
from taskflow_kit.errors import (
    BadRequest,
    GatewayTimeout,
    ProblemError,
    TooManyRequests,
    problem_response,
)
from taskflow_kit.logs import normalise_request_id
from taskflow_kit.resilience import BreakerState, UpstreamUnavailable

from api_gateway.client import FailureKind, UpstreamError, UpstreamResponse
from api_gateway.errors import BadGateway, PayloadTooLarge
from api_gateway.headers import client_response_headers, upstream_request_headers
from api_gateway.limits import GatewayRateLimits
from api_gateway.replicas import Replica
from api_gateway.routing import UnsafePathError, check_raw_path, request_target
from api_gateway.tokens import TokenGate
from api_gateway.upstreams import Upstream

logger = structlog.get_logger("api_gateway.proxy")

# Replayed after a lost connection (the first attempt may have been processed) only where a
# replay cannot change the outcome: safe methods, and the one route that honours
# Idempotency-Key (task-service answers a repeated key + body with the first answer). Not PUT,
# PATCH or DELETE, although RFC 9110 calls PUT and DELETE idempotent: a replayed DELETE answers
# 404, a replayed conditional update 412 (its If-Match is stale after the first), and every
# update bumps the task's version.
REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENCY_KEY_ROUTES = frozenset({("POST", "/api/v1/tasks/"), ("POST", "/api/v1/tasks")})


def replayable(method: str, path: str, *, idempotency_key: bool) -> bool:
    """Whether repeating this request, if the first attempt was processed, changes nothing."""
    return method in REPLAYABLE_METHODS or (
        idempotency_key and (method, path) in IDEMPOTENCY_KEY_ROUTES
    )


# Bodies up to this size are read whole (one upstream write, replayable on retry); bigger
# declared bodies stream through.
BUFFER_LIMIT = 64 * 1024


class ClientDisconnected(Exception):
    """The client went away while sending its body: there is nobody to answer."""


class _StreamedBody:
    """A request body streamed from the client, counted against the limit as it goes."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self.started = False
        # What went wrong on the client's side; the upstream client only sees a failed upload.
        self.error: ClientDisconnected | PayloadTooLarge | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        total = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.error = ClientDisconnected()
                raise self.error
            chunk: bytes = message.get("body", b"")
            total += len(chunk)
            if total > self._limit:
                self.error = PayloadTooLarge(f"The request body exceeds {self._limit} bytes")
                raise self.error
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Forwarder:
    """Everything a proxied request goes through, in order: path safety, body limit, early
    token check, rate limit, breaker, replica choice with retries, streaming the answer."""

    def __init__(
        self,
        *,
        tokens: TokenGate,
        limits: GatewayRateLimits,
        max_body_bytes: int,
        deadline: float,
        retries: int,
        retry_backoff: float,
        eject_after_5xx: int,
    ) -> None:
        self.tokens = tokens
        self.limits = limits
        self.max_body_bytes = max_body_bytes
        self.deadline = deadline
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.eject_after_5xx = eject_after_5xx

    async def __call__(
        self, upstream: Upstream, scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            path = check_raw_path(scope.get("raw_path") or scope["path"].encode())
        except UnsafePathError as exc:
            raise BadRequest(str(exc)) from exc

        content_length: int | None = None
        chunked = False
        authorization: bytes | None = None
        idempotency_key = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError as exc:
                    raise BadRequest("Content-Length is not a number") from exc
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"authorization":
                authorization = value
            elif name == b"idempotency-key":
                idempotency_key = True
        if content_length is not None and content_length > self.max_body_bytes:
            raise PayloadTooLarge(f"The request body exceeds {self.max_body_bytes} bytes")

        subject = self.tokens.subject(authorization)
        client = scope.get("client")
        client_host = client[0] if client else None
        decision = await self.limits.check(client_ip=client_host or "unknown", user_id=subject)
        extra_headers = decision.headers() if decision else []
        if decision and not decision.allowed:
            raise TooManyRequests(
                "Rate limit exceeded",
                retry_after=decision.retry_after,
                headers={name.decode(): value.decode() for name, value in extra_headers},
            )

        content: bytes | _StreamedBody | None
        try:
            if chunked and content_length is None:
                # Undeclared length: collect up to the limit, so the 413 is decided before
                # the service sees a byte of it.
                content = await _read_body(receive, self.max_body_bytes)
            elif not content_length:
                content = None
            elif content_length <= BUFFER_LIMIT:
                content = await _read_body(receive, self.max_body_bytes)
            else:
                content = _StreamedBody(receive, self.max_body_bytes)
        except ClientDisconnected:
            return

        request_id = current_request_id() or normalise_request_id(None)
        method: str = scope["method"]
        headers = upstream_request_headers(
            scope["headers"],
            client_host=client_host,
            scheme=scope["scheme"],
            request_id=request_id,
            # A streamed body goes out with the length the client declared (and uvicorn enforced).
            body_length=content_length if isinstance(content, _StreamedBody) else None,
        )
        response, replica = await self._exchange(
            upstream,
            method=method,
            target=request_target(path, scope["query_string"]),
            headers=headers,
            content=content,
            may_repeat=replayable(method, path, idempotency_key=idempotency_key),
        )
        try:
            await self._relay(response, send, extra_headers, head_only=method == "HEAD")
        finally:
            replica.in_flight -= 1
            upstream.client.finish(response)

    async def _exchange(
        self,
        upstream: Upstream,
        *,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        content: bytes | _StreamedBody | None,
        may_repeat: bool,
    ) -> tuple[UpstreamResponse, Replica]:
        """Send the request to a replica, retrying elsewhere when that is safe; the replica's
        in-flight count stays raised until the caller has relayed the body."""
        breaker = upstream.breaker
        if not breaker.allow():
            raise UpstreamUnavailable(
                f"{upstream.name} is unavailable (circuit open)",
                retry_after=breaker.retry_after(),
            )
        is_probe = breaker.state is BreakerState.HALF_OPEN
        settled = False
        tried: list[Replica] = []

        def streamed_body_started() -> bool:
            return isinstance(content, _StreamedBody) and content.started

        # The deadline caps each attempt's waits (no timer of its own on the hot path).
        deadline_at = time.monotonic() + self.deadline
        try:
            while True:
                remaining = deadline_at - time.monotonic()
                if remaining <= 0:
                    raise GatewayTimeout(
                        f"{upstream.name} did not answer within {self.deadline:g} s"
                    )
                replica = upstream.replicas.pick(tried)
                if replica is None:
                    raise UpstreamUnavailable(f"{upstream.name} has no replicas")
                tried.append(replica)
                replica.in_flight += 1
                try:
                    response = await upstream.client.send(
                        replica.host,
                        replica.port,
                        method,
                        target,
                        headers,
                        content,
                        within=remaining,
                        body_started=streamed_body_started,
                    )
                except BaseException as exc:
                    replica.in_flight -= 1
                    if isinstance(content, _StreamedBody) and content.error is not None:
                        raise content.error from exc  # the client's side failed, not the upstream
                    if not isinstance(exc, UpstreamError):
                        raise
                    error = exc
                else:
                    replica.record_status(response.status, eject_after_5xx=self.eject_after_5xx)
                    breaker.record_success()
                    settled = True
                    return response, replica

                kind = error.kind
                replayable = not isinstance(content, _StreamedBody) or not content.started
                # Nothing was sent on a connect failure, so any method may go elsewhere;
                # a lost connection may have been processed: only repeatable requests.
                retry = (
                    len(tried) <= self.retries
                    and replayable
                    and (kind.unsent or (kind is FailureKind.DISCONNECT and may_repeat))
                )
                if error.replica_at_fault and kind in (FailureKind.CONNECT, FailureKind.TIMEOUT):
                    replica.eject(f"{kind.value}: {error}")
                logger.warning(
                    "upstream_attempt_failed",
                    upstream=upstream.name,
                    replica=replica.base_url,
                    failure=kind.value,
                    error=str(error),
                    retry=retry,
                )
                if not retry:
                    # The breaker is about the upstream as a whole: a replica that failed is
                    # ejected above, and while others are routable they keep serving.
                    if is_probe or not upstream.replicas.any_routable():
                        breaker.record_failure()
                    settled = True
                    raise self._failure(upstream, kind) from error
                delay = self.retry_backoff * (2 ** (len(tried) - 1)) * random.uniform(0.5, 1.5)
                await asyncio.sleep(min(delay, max(0.0, deadline_at - time.monotonic())))
        finally:
            if is_probe and not settled:
                breaker.record_failure()  # never leave the half-open probe slot taken

    @staticmethod
    def _failure(upstream: Upstream, kind: FailureKind) -> Exception:
        if kind.unsent:
            return UpstreamUnavailable(f"{upstream.name} is unreachable", retry_after=1)
        if kind is FailureKind.TIMEOUT:
            return GatewayTimeout(f"{upstream.name} did not answer in time")
        return BadGateway(f"{upstream.name} closed the connection or answered invalid HTTP")

    @staticmethod
    async def _relay(
        response: UpstreamResponse,
        send: Send,
        extra_headers: list[tuple[bytes, bytes]],
        *,
        head_only: bool,
    ) -> None:
        headers = client_response_headers(response.raw_headers)
        headers.extend(extra_headers)
        length = response.content_length
        small = (
            head_only
            or response.status in (204, 304)
            or (length is not None and length <= BUFFER_LIMIT)
        )
        start = {"type": "http.response.start", "status": response.status, "headers": headers}
        try:
            if small:
                body = await response.read()
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(start)
            async for chunk in response.iter_chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except UpstreamError as exc:
            if small:  # nothing sent yet: a clean error is still possible
                raise BadGateway("The upstream response was cut short") from exc
            # Headers are out: ending without the final body message makes the server drop the
            # connection, which is how a truncated body must reach the client.
            logger.warning("upstream_body_failed", error=str(exc))


class ProxyRoute(BaseRoute):
    """Matches one public prefix (with or without trailing slash, and everything below it)
    and hands the request to the forwarder for that prefix's upstream."""

    def __init__(self, prefix: str, upstream: str) -> None:
        self.path = prefix  # also the bounded metrics label
        self.upstream = upstream
        self.name = f"proxy:{prefix}"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path: str = scope["path"]
        prefix = self.path
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = scope["app"].state.gateway
        await gateway.forwarder(gateway.upstreams[self.upstream], scope, receive, send)


class ProblemBoundary:
    """Renders errors raised before the answer started as problem+json, as the kit's handlers
    do for FastAPI routes (the forwarder raises only before it sends anything)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ProblemError as exc:
            response = problem_response(
                exc.status_code,
                exc.title,
                exc.detail,
                type_=exc.type,
                headers=exc.headers,
                extra=exc.extra,
            )
            await response(scope, receive, send)
        except Exception:
            logger.exception("unhandled_error", path=scope.get("path"))
            response = problem_response(
                500, "Internal Server Error", "An unexpected error occurred"
            )
            await response(scope, receive, send)


class ProxyFirst:
    """In front of the FastAPI app: a proxied path goes straight to its own short chain (CORS,
    request id + access log, metrics, problem rendering, forwarder), skipping the per-request
    layers FastAPI and Starlette add for their routes (error middlewares, a Request object,
    exit stacks, route matching). Everything else goes to the app as usual."""

    def __init__(self, proxied: ASGIApp, app: ASGIApp, routes: list[ProxyRoute]) -> None:
        self.proxied = proxied
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                match, _ = route.matches(scope)
                if match is Match.FULL:
                    scope["route"] = route  # the metrics label: the prefix, a bounded set
                    await self.proxied(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class ProxyDispatch:
    """The route chosen by `ProxyFirst` handles the request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: ProxyRoute = scope["route"]
        await route.handle(scope, receive, send)
