"""A small pooled HTTP/1.1 client for the proxy hot path: asyncio protocols + httptools.

Why not httpx or aiohttp: forwarding a request is a few hundred microseconds of CPU, and a
general-purpose client spends most of it on features a proxy must not use (cookies, redirects,
auth, URL re-parsing and requoting, default headers). This client writes the request head
the gateway already built in one `write`, parses the answer with the same C parser uvicorn
uses, streams bodies with flow control, and keeps idle connections per replica. Failures are
classified by where they happened, which is what the retry rules need (see FailureKind).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import cast

import httptools

RawHeaders = list[tuple[bytes, bytes]]

# Upstream connections idle longer than this are not reused: uvicorn closes idle keep-alive
# connections after 5 s, and reusing one just as it closes would fail a request.
IDLE_SECONDS = 4.0
# Pause reading from the upstream while this much body is waiting for the client.
HIGH_WATER = 256 * 1024


class FailureKind(enum.Enum):
    """Where an attempt failed, which decides whether it may be retried."""

    CONNECT = "connect"  # no connection: not a byte of the request was sent
    DISCONNECT = "disconnect"  # connection lost before a full answer: may have been processed
    TIMEOUT = "timeout"  # sent, no answer within the read timeout
    PROTOCOL = "protocol"  # the upstream answered something that is not HTTP


class UpstreamError(Exception):
    def __init__(self, kind: FailureKind, detail: str, *, replica_at_fault: bool = True) -> None:
        super().__init__(detail)
        self.kind = kind
        # False when the replica is merely busy (every pooled connection in use).
        self.replica_at_fault = replica_at_fault


class UpstreamResponse:
    """Status and headers once the head has arrived; the body as it arrives."""

    def __init__(self, connection: _Connection, *, head_only: bool, read_timeout: float) -> None:
        self._connection = connection
        self._head_only = head_only
        self._read_timeout = read_timeout
        self.status = 0
        self.raw_headers: RawHeaders = []
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = False
        self.complete = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._head: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # Called by the connection's parser.
    def _on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" and value.isdigit():
            self.content_length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            self.chunked = True
        self.raw_headers.append((name, value))

    def _on_headers_complete(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self.keep_alive = keep_alive
        if self._head_only:  # a HEAD answer has no body whatever its Content-Length says
            self.complete = True
            self.keep_alive = False
        if not self._head.done():
            self._head.set_result(None)

    def _on_body(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > HIGH_WATER:
            self._connection.pause_reading()
        self._wake()

    def _on_complete(self) -> None:
        self.complete = True
        self._wake()

    def delimited_by_close(self) -> bool:
        """A head without Content-Length or chunked coding: the body runs to the close."""
        return self._head.done() and self.content_length is None and not self.chunked

    def _fail(self, error: UpstreamError) -> None:
        if self.complete:
            return
        self._error = error
        if not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait_head(self, seconds: float) -> None:
        await _with_timeout(self._head, seconds)

    async def _wait_data(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await _with_timeout(self._waiter, self._read_timeout)
        finally:
            self._waiter = None
        if self._error is not None and not self._chunks:
            raise self._error

    async def read(self) -> bytes:
        """The whole body."""
        while not self.complete:
            await self._wait_data()
        chunks = self._chunks
        self._chunks = collections.deque()
        self._buffered = 0
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body piece by piece, reading on only as fast as the caller consumes."""
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered <= HIGH_WATER // 2:
                    self._connection.resume_reading()
                yield chunk
            if self.complete:
                return
            await self._wait_data()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reading_paused = False
        self._can_write: asyncio.Event | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same API.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response.complete:
            self.close()  # nothing was asked: the connection cannot be trusted any more
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(UpstreamError(FailureKind.PROTOCOL, f"invalid HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None:
            if exc is None and response.delimited_by_close():
                response._on_complete()  # HTTP/1.0 style: the body ends with the connection
            else:
                response._fail(
                    UpstreamError(FailureKind.DISCONNECT, "the upstream closed the connection")
                )
        if self._can_write is not None:
            self._can_write.set()
        self.pool.forget(self)

    def pause_writing(self) -> None:
        self._can_write = asyncio.Event()

    def resume_writing(self) -> None:
        if self._can_write is not None:
            self._can_write.set()
            self._can_write = None

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response._on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response._on_headers_complete(
                self.parser.get_status_code(), self.parser.should_keep_alive()
            )

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._on_body(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response._on_complete()

    # used by the client
    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self._can_write is not None:
            await self._can_write.wait()
        if self.closed:
            raise UpstreamError(FailureKind.DISCONNECT, "the upstream closed the connection")

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Connections to one replica address."""

    def __init__(self, limit: int) -> None:
        self.idle: collections.deque[_Connection] = collections.deque()
        self.open = 0
        self.slots = asyncio.Semaphore(limit)

    def forget(self, connection: _Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)

    def give_back(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        self.idle.append(connection)
        self.slots.release()

    def take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            connection = self.idle.pop()  # the most recently used: least likely to be stale
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None


class UpstreamClient:
    """Pooled keep-alive connections to every replica of one upstream."""

    def __init__(
        self, *, connect_timeout: float, read_timeout: float, max_connections_per_replica: int
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limit = max_connections_per_replica
        self._pools: dict[tuple[str, int], _Pool] = {}

    async def aclose(self) -> None:
        for pool in self._pools.values():
            while pool.idle:
                pool.idle.pop().close()
        self._pools.clear()

    async def _connection(self, host: str, port: int, connect_timeout: float) -> _Connection:
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self.limit)
        if pool.slots.locked():  # all connections busy: wait, but no longer than a connect
            try:
                async with asyncio.timeout(connect_timeout):
                    await pool.slots.acquire()
            except TimeoutError as exc:
                raise UpstreamError(
                    FailureKind.CONNECT, "no free connection in time", replica_at_fault=False
                ) from exc
        else:
            await pool.slots.acquire()  # free: returns at once
        connection = pool.take_idle()
        if connection is not None:
            return connection
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                transport, protocol = await loop.create_connection(
                    lambda: _Connection(pool), host.strip("[]"), port
                )
        except (OSError, TimeoutError) as exc:
            pool.slots.release()
            raise UpstreamError(FailureKind.CONNECT, f"cannot connect: {exc!r}") from exc
        except BaseException:
            pool.slots.release()
            raise
        # uvloop may call connection_made() only on the next loop iteration.
        protocol.transport = transport
        return protocol

    async def send(
        self,
        host: str,
        port: int,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None,
        *,
        head_only: bool = False,
        within: float | None = None,
    ) -> UpstreamResponse:
        """Send a request (`head` is the complete request line and headers) and wait for the
        answer's head; `within` caps the connect and head waits (what is left of a deadline).
        The caller must `finish()` the response."""
        connect_timeout = (
            self.connect_timeout if within is None else min(self.connect_timeout, within)
        )
        began = time.monotonic()
        connection = await self._connection(host, port, connect_timeout)
        response = UpstreamResponse(connection, head_only=head_only, read_timeout=self.read_timeout)
        connection.response = response
        try:
            if body is None or isinstance(body, bytes):
                connection.write(head + body if body else head)
            else:
                connection.write(head)
                try:
                    async with asyncio.timeout(self.read_timeout if within is None else within):
                        async for chunk in body:
                            connection.write(chunk)
                            await connection.drain()
                except TimeoutError as exc:
                    raise UpstreamError(
                        FailureKind.TIMEOUT, "the upstream did not take the request body in time"
                    ) from exc
            started = time.monotonic()
            await response._wait_head(
                self.read_timeout
                if within is None
                else max(0.0, min(self.read_timeout, within - (started - began)))
            )
        except BaseException:
            self.finish(response)
            raise
        return response

    async def get(self, host: str, port: int, target: str) -> tuple[int, bytes]:
        """A small GET for probes and docs: (status, body)."""
        head = (
            f"GET {target} HTTP/1.1\r\nhost: {host}:{port}\r\naccept: application/json\r\n\r\n"
        ).encode("latin-1")
        response = await self.send(host, port, head, None)
        try:
            body = await response.read()
        finally:
            self.finish(response)
        return response.status, body

    @staticmethod
    def finish(response: UpstreamResponse) -> None:
        """End an exchange: the connection goes back to its pool if the answer was read to the
        end and may be kept alive, otherwise it is closed. Idempotent."""
        connection = response._connection
        if connection.response is not response:
            return
        connection.response = None
        if response.complete and response.keep_alive and not connection.closed:
            connection.resume_reading()
            connection.pool.give_back(connection)
        else:
            connection.close()
            connection.pool.slots.release()


async def _with_timeout(future: asyncio.Future[None], seconds: float) -> None:
    if future.done():
        future.result()
        return
    loop = asyncio.get_running_loop()

    def expire() -> None:
        if not future.done():
            future.set_exception(
                UpstreamError(FailureKind.TIMEOUT, f"no answer within {seconds:g} s")
            )

    timer = loop.call_later(seconds, expire)
    try:
        await future
    finally:
        timer.cancel()
