"""The upstream client on the wire: keep-alive reuse, stale connections, odd framings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from api_gateway.client import FailureKind, UpstreamClient, UpstreamError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server running `handler` per connection; yields its port and connection count."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)  # type: ignore[misc]
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        await server.wait_closed()


def client(**options: float) -> UpstreamClient:
    return UpstreamClient(
        connect_timeout=options.get("connect_timeout", 1.0),
        read_timeout=options.get("read_timeout", 1.0),
        max_connections_per_replica=4,
    )


async def test_keep_alive_connections_are_reused() -> None:
    async def answer_many(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    upstream = client()
    async with raw_server(answer_many) as (port, connections):
        for _ in range(5):
            status, body = await upstream.get("127.0.0.1", port, "/x")
            assert (status, body) == (200, b"ok")
        assert len(connections) == 1
        await upstream.aclose()


async def test_a_connection_closed_by_the_server_while_idle_is_not_reused() -> None:
    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)  # then an idle timeout closes it, as uvicorn does

    upstream = client()
    async with raw_server(answer_then_close) as (port, connections):
        assert await upstream.get("127.0.0.1", port, "/x") == (200, b"ok")
        await asyncio.sleep(0.2)
        assert await upstream.get("127.0.0.1", port, "/x") == (200, b"ok")
        assert len(connections) == 2
        await upstream.aclose()


async def test_a_body_delimited_by_the_connection_close_is_complete() -> None:
    async def old_style(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()

    upstream = client()
    async with raw_server(old_style) as (port, _):
        assert await upstream.get("127.0.0.1", port, "/x") == (200, b"until the end")
        await upstream.aclose()


async def test_failures_are_classified_by_where_they_happened() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)

    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()

    upstream = client(read_timeout=0.2)
    expectations = [
        (silent, FailureKind.TIMEOUT),
        (hang_up, FailureKind.DISCONNECT),
        (garbage, FailureKind.PROTOCOL),
        (truncated, FailureKind.DISCONNECT),
    ]
    for handler, kind in expectations:
        async with raw_server(handler) as (port, _):
            with pytest.raises(UpstreamError) as caught:
                await upstream.get("127.0.0.1", port, "/x")
            assert caught.value.kind is kind, handler.__name__

    async with raw_server(silent) as (port, _):
        pass  # closed: nothing listens on this port any more
    with pytest.raises(UpstreamError) as caught:
        await upstream.get("127.0.0.1", port, "/x")
    assert caught.value.kind is FailureKind.CONNECT
    await upstream.aclose()


async def test_slots_are_returned_whatever_happens() -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
            await writer.drain()
            return

    upstream = client(read_timeout=0.1, connect_timeout=0.2)
    async with raw_server(truncated) as (port, _):
        for _ in range(10):  # more than the 4 slots: each failure must give its slot back
            with pytest.raises(UpstreamError):
                await upstream.get("127.0.0.1", port, "/x")
    await upstream.aclose()


async def test_a_body_larger_than_the_read_buffer_is_read_whole_without_stalling() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: far above any flow-control high-water mark

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        await asyncio.sleep(2)

    upstream = client(read_timeout=1.0)
    async with raw_server(big) as (port, _):
        async with asyncio.timeout(0.9):  # well inside the read timeout: no stall at all
            assert await upstream.get("127.0.0.1", port, "/openapi.json") == (200, body)
    await upstream.aclose()


async def test_a_connection_is_not_reused_after_a_5xx_answer() -> None:
    """A server that failed may close the connection right after its answer (uvicorn does when
    the app raised); a request written on it meanwhile would be lost without an answer."""

    async def fail_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /boom "):
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nboom")
                await writer.drain()
                await reader.readuntil(b"\r\n\r\n")  # the next request on it: dropped
                return
            await reader.readexactly(14)  # the POST's body
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    upstream = client()
    async with raw_server(fail_then_hang_up) as (port, connections):
        for _ in range(3):
            assert await upstream.get("127.0.0.1", port, "/boom") == (500, b"boom")
            response = await upstream.send(
                "127.0.0.1", port, "POST", "/tasks/", [("host", "a")], b'{"title": "x"}'
            )
            try:
                assert response.status == 201
                assert await response.read() == b"ok"
            finally:
                upstream.finish(response)
        assert len(connections) == 4  # one per 5xx, and the one the POSTs share
    await upstream.aclose()


async def test_a_request_carries_the_headers_given_and_no_others() -> None:
    """No User-Agent, Accept, Accept-Encoding or (for a body) Content-Type of the library's:
    the gateway sends the client's headers as they are."""
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.split(b"\r\n")
            length = next((int(x.split(b":")[1]) for x in lines if b"Length:" in x), 0)
            heads.append(head + await reader.readexactly(length))
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    upstream = client()
    async with raw_server(record) as (port, _):
        for method, body in (("GET", None), ("POST", b'{"a": 1}')):
            response = await upstream.send(
                "127.0.0.1", port, method, "/x?y=1", [("host", "example.test"), ("x-a", "1")], body
            )
            upstream.finish(response)
        await upstream.aclose()
    get, post = (head.split(b"\r\n") for head in heads)
    assert get == [b"GET /x?y=1 HTTP/1.1", b"host: example.test", b"x-a: 1", b"", b""]
    assert post == [
        b"POST /x?y=1 HTTP/1.1",
        b"host: example.test",
        b"x-a: 1",
        b"Content-Length: 8",
        b"",
        b'{"a": 1}',
    ]
