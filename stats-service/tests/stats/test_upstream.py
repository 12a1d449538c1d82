"""The production transport to task-service (aiohttp under httpx's interface), on real
sockets: answers, conditional answers and failures read as they do on httpx's own."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from stats_service.stats.upstream import TaskAggregatesClient, pooled_transport
from taskflow_kit.resilience import ResilientClient, UpstreamUnavailable

AGGREGATES = "/internal/tasks/aggregates"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def task_service_stub(
    payload: Callable[..., dict[str, Any]],
) -> AsyncIterator[tuple[TestServer, list[web.Request]]]:
    """A real HTTP server in place of task-service: 304 when If-None-Match is its ETag."""
    seen: list[web.Request] = []

    async def aggregates(request: web.Request) -> web.Response:
        seen.append(request)
        if request.headers.get("If-None-Match") == '"v7"':
            return web.Response(status=304, headers={"ETag": '"v7"'})
        return web.json_response(payload(todo=3, done=1), headers={"ETag": '"v7"'})

    app = web.Application()
    app.router.add_get(AGGREGATES, aggregates)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


def upstream_at(
    url: str, *, read_timeout: float = 5.0
) -> tuple[ResilientClient, TaskAggregatesClient]:
    client = ResilientClient(
        name="task-service",
        base_url=url,
        read_timeout=read_timeout,
        retries=1,
        backoff=0.001,
        transport=pooled_transport(),
    )
    return client, TaskAggregatesClient(client)


async def test_answers_and_revalidations_over_the_pooled_transport(
    task_service_stub: tuple[TestServer, list[web.Request]],
) -> None:
    server, seen = task_service_stub
    client, upstream = upstream_at(str(server.make_url("")))
    try:
        first = await upstream.fetch_if_changed("tok", system=False, activity_days=7)
        again = await upstream.fetch_if_changed("tok", system=False, activity_days=7, tag=first.tag)
    finally:
        await client.aclose()
    assert first.aggregates is not None
    assert first.aggregates.by_status.todo == 3
    assert first.tag == '"v7"'
    assert again.aggregates is None
    assert again.tag == '"v7"'
    assert [r.headers["Authorization"] for r in seen] == ["Bearer tok", "Bearer tok"]
    assert seen[0].query["activity_days"] == "7"
    # One kept-alive connection served both calls.
    assert seen[0].transport is seen[1].transport


async def test_a_refused_connection_is_upstream_unavailable() -> None:
    client, upstream = upstream_at(f"http://127.0.0.1:{closed_port()}")
    try:
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            await upstream.fetch_if_changed("tok", system=False, activity_days=1)
    finally:
        await client.aclose()


async def test_a_silent_upstream_times_out_as_upstream_unavailable() -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client, upstream = upstream_at(f"http://127.0.0.1:{port}", read_timeout=0.2)
    try:
        with pytest.raises(UpstreamUnavailable):
            await asyncio.wait_for(
                upstream.fetch_if_changed("tok", system=False, activity_days=1), timeout=5
            )
    finally:
        await client.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
