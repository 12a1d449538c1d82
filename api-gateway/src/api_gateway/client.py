"""The pooled HTTP client the gateway talks to its upstreams with: aiohttp, used as a proxy needs.

aiohttp does the protocol (keep-alive pool, parser, flow control, body framing). What this
module adds is what the retry rules and the replicas need:

- a bounded number of connections per replica (a slot is taken before connecting and given back
  when the exchange ends, whatever happens), waiting for a free one no longer than a connect;
- failures classified by where they happened (`FailureKind`), which decides whether an attempt
  may be repeated;
- nothing a general-purpose client adds on its own: no cookie jar (nothing of one user's
  exchange is stored), no default headers, no decompression (bodies pass byte for byte), no
  re-quoting of the path, no redirects, and no silent retry of its own (aiohttp repeats
  idempotent methods once on a lost keep-alive connection; the gateway decides that itself);
- no reuse of a connection after a 5xx answer: a server that failed may close the connection
  right after answering (uvicorn does when the app raised), and the next request written on it
  would be lost without an answer.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Self

import aiohttp
from aiohttp.connector import Connection
from multidict import CIMultiDict
from yarl import URL

# Upstream connections idle longer than this are not reused: uvicorn closes idle keep-alive
# connections after 5 s, and reusing one just as it closes would fail a request.
IDLE_SECONDS = 4.0
# Headers aiohttp would add to a request (Content-Type to one with a body); the gateway sends
# the client's, no others.
_NO_AUTO_HEADERS: CIMultiDict[None] = CIMultiDict(
    (name, None) for name in ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
)


def base_url(scheme: str, host: str, port: int) -> str:
    """`scheme://host:port`, an IPv6 literal in brackets: the one place a replica's URL is made."""
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class FailureKind(enum.Enum):
    """Where an attempt failed, which decides whether it may be retried."""

    CONNECT = "connect"  # no connection: not a byte of the request was sent
    NOT_SENT = "not-sent"  # a pooled connection was closed before anything was written on it
    DISCONNECT = "disconnect"  # connection lost before a full answer: may have been processed
    TIMEOUT = "timeout"  # sent, no answer within the read timeout
    PROTOCOL = "protocol"  # the upstream answered something that is not HTTP

    @property
    def unsent(self) -> bool:
        """The upstream cannot have seen this request: any method may go elsewhere."""
        return self in (FailureKind.CONNECT, FailureKind.NOT_SENT)


class UpstreamError(Exception):
    def __init__(self, kind: FailureKind, detail: str, *, replica_at_fault: bool = True) -> None:
        super().__init__(detail)
        self.kind = kind
        # False when the replica is merely busy (every connection to it in use).
        self.replica_at_fault = replica_at_fault


def classify(exc: BaseException, *, body_started: bool) -> UpstreamError | None:
    """The `UpstreamError` an aiohttp failure stands for (None: not a transport failure)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        return UpstreamError(FailureKind.CONNECT, f"cannot connect: {exc}")
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return UpstreamError(FailureKind.TIMEOUT, f"no answer in time: {exc}")
    if isinstance(exc, aiohttp.ClientConnectionResetError) and not body_started:
        # aiohttp found the transport closing when it was about to write the request.
        return UpstreamError(FailureKind.NOT_SENT, "the pooled connection was already closed")
    if isinstance(exc, aiohttp.ClientResponseError):  # the parser refused the answer
        return UpstreamError(FailureKind.PROTOCOL, f"invalid HTTP answer: {exc.message}")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientConnectionError | OSError):
        return UpstreamError(FailureKind.DISCONNECT, f"the upstream closed the connection: {exc}")
    return None


@dataclass(slots=True)
class UpstreamResponse:
    """Status and headers once the head has arrived; the body as it arrives. The caller must
    `UpstreamClient.finish()` it."""

    status: int
    raw_headers: Sequence[tuple[bytes, bytes]]  # as received: names in their own case
    content_length: int | None
    _response: aiohttp.ClientResponse
    _slot: asyncio.Semaphore | None

    async def read(self) -> bytes:
        """The whole body."""
        try:
            return await self._response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _as_upstream_error(exc) from exc

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body piece by piece, reading on only as fast as the caller consumes."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _as_upstream_error(exc) from exc


class _Request(aiohttp.ClientRequest):
    """aiohttp's request, adding no header of its own. The same as the session's
    `skip_auto_headers`, which rebuilds the skipped names and copies the headers on every
    request (≈ 7 µs each, half of building the request)."""

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        self._skip_auto_headers = _NO_AUTO_HEADERS  # also read when a body is added


class _Answer(aiohttp.ClientResponse):
    """aiohttp's response, except that a connection that carried a 5xx is never pooled."""

    async def start(self, connection: Connection) -> Self:
        protocol = connection.protocol
        await super().start(connection)
        if self.status >= 500 and protocol is not None:
            if self.connection is None:
                # The whole answer came with its head: aiohttp has pooled the connection.
                protocol.close()
            else:
                protocol.force_close()  # closed instead of pooled once the body is read
        return self


def _as_upstream_error(exc: BaseException) -> UpstreamError:
    return classify(exc, body_started=True) or UpstreamError(FailureKind.DISCONNECT, str(exc))


class UpstreamClient:
    """Pooled keep-alive connections to every replica of one upstream."""

    def __init__(
        self, *, connect_timeout: float, read_timeout: float, max_connections_per_replica: int
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limit = max_connections_per_replica
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._bases: dict[tuple[str, int], str] = {}
        self._session: aiohttp.ClientSession | None = None

    def _client_session(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds a session to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,  # the slots below bound connections, per replica
                keepalive_timeout=IDLE_SECONDS,
                ttl_dns_cache=None,  # replicas are addresses; DNS is the replica set's job
                use_dns_cache=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                request_class=_Request,
                response_class=_Answer,
                auto_decompress=False,
                timeout=self._timeout,
            )
            # aiohttp repeats GET, PUT, DELETE... once when a kept-alive connection is lost; a
            # replayed DELETE answers 404. The gateway's own retry rules decide instead.
            self._session._retry_connection = False
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _take_slot(self, key: tuple[str, int], wait: float) -> asyncio.Semaphore:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = asyncio.Semaphore(self.limit)
        if not slot.locked():
            await slot.acquire()  # free: returns at once
            return slot
        try:  # every connection busy: wait, but no longer than a connect
            async with asyncio.timeout(wait):
                await slot.acquire()
        except TimeoutError as exc:
            raise UpstreamError(
                FailureKind.CONNECT, "no free connection in time", replica_at_fault=False
            ) from exc
        return slot

    def _base(self, key: tuple[str, int]) -> str:
        base = self._bases.get(key)
        if base is None:
            base = self._bases[key] = base_url("http", *key)
        return base

    async def send(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None = None,
        *,
        within: float | None = None,
        body_started: Callable[[], bool] | None = None,
    ) -> UpstreamResponse:
        """Send a request (`target` is the raw path and query, sent as is) and wait for the
        answer's head; `within` caps the connect and head waits (what is left of a deadline).
        `body_started` tells, after a failure, whether a streamed body began to go out."""
        connect_timeout, read_timeout = self.connect_timeout, self.read_timeout
        timeout = self._timeout
        if within is not None and within < max(connect_timeout, read_timeout):
            connect_timeout, read_timeout = min(connect_timeout, within), min(read_timeout, within)
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=connect_timeout, sock_read=read_timeout
            )
        key = (host, port)
        slot = await self._take_slot(key, connect_timeout)
        try:
            response = await self._client_session().request(
                method,
                URL(self._base(key) + target, encoded=True),
                headers=headers,  # pairs: aiohttp builds its own header multidict from them
                data=body,
                allow_redirects=False,
                compress=None,
                timeout=timeout,
            )
        except BaseException as exc:
            slot.release()
            error = classify(exc, body_started=body_started() if body_started else False)
            if error is None:
                raise
            raise error from exc
        return UpstreamResponse(
            status=response.status,
            raw_headers=response.raw_headers,
            content_length=response.content_length,
            _response=response,
            _slot=slot,
        )

    async def get(self, host: str, port: int, target: str) -> tuple[int, bytes]:
        """A small GET for probes and docs: (status, body)."""
        response = await self.send(
            host, port, "GET", target, [("host", f"{host}:{port}"), ("accept", "application/json")]
        )
        try:
            body = await response.read()
        finally:
            self.finish(response)
        return response.status, body

    @staticmethod
    def finish(response: UpstreamResponse) -> None:
        """End an exchange: the connection goes back to the pool if the answer was read to the
        end and may be kept alive, otherwise it is closed; the slot is given back. Idempotent."""
        slot, response._slot = response._slot, None
        if slot is None:
            return
        response._response.close()  # no-op for the connection once the body was read whole
        slot.release()
