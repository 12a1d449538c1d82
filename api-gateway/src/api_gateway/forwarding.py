"""Forwarding one proxied request, top to bottom: the request's checks (path, body size, token,
rate limit: every refusal the gateway makes itself), its body, the upstream exchange
(api_gateway.exchange: breaker, replica, retries) and relaying the answer.

Raw ASGI rather than a FastAPI endpoint: no request parsing, no dependency resolution and no
Response object per request; bodies stream through untouched. Refusals are raised (the kit's
problem+json handlers render them) and only before anything was sent to the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from starlette.types import Receive, Scope, Send
from taskflow_kit.context import current_request_id
from taskflow_kit.errors import BadRequest, TooManyRequests
from taskflow_kit.logs import normalise_request_id

from api_gateway.client import UpstreamError, UpstreamResponse
from api_gateway.errors import BadGateway, PayloadTooLarge
from api_gateway.exchange import RetryPolicy, UpstreamRequest, exchange
from api_gateway.forwarded import ClientAddress, TrustedProxies
from api_gateway.headers import RawHeaders, client_response_headers, upstream_request_headers
from api_gateway.limits import GatewayRateLimits
from api_gateway.paths import UnsafePathError, check_raw_path, request_target
from api_gateway.tokens import TokenGate
from api_gateway.upstreams import Upstream

logger = structlog.get_logger("api_gateway.forwarding")

# Bodies up to this size are read whole (one upstream write, replayable on retry); bigger
# declared bodies stream through. Answers up to it are relayed in one body message.
BUFFER_LIMIT = 64 * 1024


class ClientDisconnected(Exception):
    """The client went away while sending its body: there is nobody to answer."""


class StreamedBody:
    """A request body from the client, counted against the limit as it goes."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._total = 0
        self.started = False
        # What went wrong on the client's side; the upstream client only sees a failed upload.
        self.error: ClientDisconnected | PayloadTooLarge | None = None

    async def _next(self) -> tuple[bytes, bool]:
        """The next piece of the body and whether more follows, counted against the limit."""
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.error = ClientDisconnected()
            raise self.error
        chunk: bytes = message.get("body", b"")
        self._total += len(chunk)
        if self._total > self._limit:
            self.error = PayloadTooLarge(f"The request body exceeds {self._limit} bytes")
            raise self.error
        return chunk, message.get("more_body", False)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        more = True
        while more:
            chunk, more = await self._next()
            if chunk:
                yield chunk

    async def read(self) -> bytes:
        """The whole body (the limit still applies); one message (the usual case) is not
        copied."""
        self.started = True
        chunk, more = await self._next()
        if not more:
            return chunk
        chunks = [chunk]
        while more:
            chunk, more = await self._next()
            chunks.append(chunk)
        return b"".join(chunks)


@dataclass(slots=True)
class _Inbound:
    """What the forwarder needs from the request's headers, scanned once."""

    content_length: int | None = None
    chunked: bool = False
    authorization: bytes | None = None
    idempotency_key: bool = False
    forwarded_for: bytes | None = None  # every X-Forwarded-For value, comma-joined

    @classmethod
    def scan(cls, headers: list[tuple[bytes, bytes]]) -> _Inbound:
        inbound = cls()
        for name, value in headers:
            if name == b"content-length":
                try:
                    inbound.content_length = int(value)
                except ValueError as exc:
                    raise BadRequest("Content-Length is not a number") from exc
            elif name == b"transfer-encoding":
                inbound.chunked = True
            elif name == b"authorization":
                inbound.authorization = value
            elif name == b"idempotency-key":
                inbound.idempotency_key = True
            elif name == b"x-forwarded-for":
                previous = inbound.forwarded_for
                inbound.forwarded_for = value if previous is None else previous + b", " + value
        return inbound


class Forwarder:
    """Everything a request to one upstream goes through, in order: the checks (path safety,
    body limit, early token check, rate limit), the body, the upstream exchange, the relay of
    the answer. Built once per upstream with everything it needs."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        tokens: TokenGate,
        limits: GatewayRateLimits,
        max_body_bytes: int,
        policy: RetryPolicy,
        proxies: TrustedProxies,
    ) -> None:
        self.upstream = upstream
        self.tokens = tokens
        self.limits = limits
        self.proxies = proxies
        self.max_body_bytes = max_body_bytes
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, inbound, client, rate_headers = await self._check(scope)

        length = inbound.content_length
        streamed = StreamedBody(receive, self.max_body_bytes)
        body: bytes | StreamedBody | None = None
        try:
            # An undeclared (chunked) length is collected up to the limit, so the 413 is decided
            # before the service sees a byte of it; small declared bodies are read whole.
            if (inbound.chunked and length is None) or (length and length <= BUFFER_LIMIT):
                body = await streamed.read()
            elif length:
                body = streamed
        except ClientDisconnected:
            return

        request = UpstreamRequest(
            method=scope["method"],
            path=path,
            target=request_target(path, scope["query_string"]),
            headers=upstream_request_headers(
                scope["headers"],
                forwarded_for=client.forwarded_for,
                scheme=scope["scheme"],
                request_id=current_request_id() or normalise_request_id(None),
                # A streamed body goes out with the length the client declared (uvicorn
                # enforces it).
                body_length=length if body is streamed else None,
            ),
            body=body,
            idempotency_key=inbound.idempotency_key,
            body_started=lambda: streamed.started and body is streamed,
        )
        try:
            answer = await exchange(self.upstream, request, self.policy)
        except Exception as exc:
            if streamed.error is None:
                raise
            if isinstance(streamed.error, ClientDisconnected):
                return  # nobody to answer
            raise streamed.error from exc  # the client's side failed, not the upstream
        try:
            await _relay(answer.response, send, rate_headers, head_only=request.method == "HEAD")
        finally:
            answer.finish()

    async def _check(self, scope: Scope) -> tuple[str, _Inbound, ClientAddress, RawHeaders]:
        """The refusals: 400 for an unsafe path or a bad Content-Length, 413 for a declared body
        over the limit, 401 for a bad token (TokenGate), 429 past a rate limit. Returns the
        checked raw path, what the headers said, who the client is (api_gateway.forwarded) and
        the `RateLimit-*` headers for the answer."""
        try:
            path = check_raw_path(scope.get("raw_path") or scope["path"].encode())
        except UnsafePathError as exc:
            raise BadRequest(str(exc)) from exc
        inbound = _Inbound.scan(scope["headers"])
        if inbound.content_length is not None and inbound.content_length > self.max_body_bytes:
            raise PayloadTooLarge(f"The request body exceeds {self.max_body_bytes} bytes")
        subject = self.tokens.subject(inbound.authorization)
        peer = scope.get("client")
        client = self.proxies.client(peer[0] if peer else None, inbound.forwarded_for)
        decision = await self.limits.check(client_ip=client.address or "unknown", user_id=subject)
        if decision is None:
            return path, inbound, client, []
        headers = decision.headers()
        if not decision.allowed:
            raise TooManyRequests(
                "Rate limit exceeded",
                retry_after=decision.retry_after,
                headers={name.decode(): value.decode() for name, value in headers},
            )
        return path, inbound, client, headers


async def _relay(
    response: UpstreamResponse,
    send: Send,
    extra_headers: RawHeaders,
    *,
    head_only: bool,
) -> None:
    """Status, headers (minus hop-by-hop ones) and body to the client: a small answer in one
    message, a bigger one streamed as fast as the client takes it."""
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
