"""The request middleware's access line, request id and metrics, for HTTP and WebSocket, and the
batched line writer."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect
from taskflow_kit.logs import LineWriter, RequestContextMiddleware, access_log, configure_logging


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    configure_logging(service="logs-test", level="INFO", json=True)
    out = io.StringIO()
    access_log.writer = LineWriter(out)
    yield out
    access_log.writer.flush()


def entries(out: io.StringIO) -> list[dict[str, object]]:
    access_log.writer.flush()
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def upstream_answer(_request: object) -> Response:
    # An upstream's own X-Request-ID, as a proxied answer carries it.
    return Response("ok", headers={"X-Request-ID": "from-upstream"})


async def refuse(websocket: WebSocket) -> None:
    await websocket.close(1008)


async def accept(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.close()


def app() -> RequestContextMiddleware:
    routes = [
        Route("/thing/{id}", upstream_answer),
        WebSocketRoute("/refused", refuse),
        WebSocketRoute("/accepted", accept),
    ]
    return RequestContextMiddleware(Starlette(routes=routes), service="logs-test")


async def test_http_access_line_carries_the_request_id_once(lines: io.StringIO) -> None:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://kit") as client:
        response = await client.get("/thing/5", headers={"X-Request-ID": "req-1"})
    assert response.headers.get_list("x-request-id") == ["req-1"]
    (line,) = entries(lines)
    assert line["event"] == "request"
    assert line["service"] == "logs-test"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/thing/5", 200)
    assert line["request_id"] == "req-1"
    assert line["level"] == "info"
    assert isinstance(line["trace_id"], str)
    assert len(line["trace_id"]) == 32
    assert isinstance(line["duration_ms"], float)
    assert str(line["timestamp"]).endswith("Z")
    labels = {"service": "logs-test", "method": "GET", "route": "/thing/{id}", "status": "200"}
    assert REGISTRY.get_sample_value("taskflow_http_requests_total", labels) == 1.0


def test_websockets_get_a_line_and_metrics_accepted_or_refused(lines: io.StringIO) -> None:
    with TestClient(app()) as client:
        with client.websocket_connect("/accepted", headers={"X-Request-ID": "ws-1"}) as ws:
            assert ws.receive_text() == "hi"
            assert (b"x-request-id", b"ws-1") in (ws.extra_headers or [])
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect("/refused", headers={"X-Request-ID": "ws-2"}),
        ):
            pass
    by_id = {line["request_id"]: line for line in entries(lines)}
    assert (by_id["ws-1"]["method"], by_id["ws-1"]["status"]) == ("WEBSOCKET", 101)
    assert (by_id["ws-2"]["method"], by_id["ws-2"]["status"]) == ("WEBSOCKET", 403)
    refused = {"service": "logs-test", "method": "WEBSOCKET", "route": "/refused", "status": "403"}
    assert REGISTRY.get_sample_value("taskflow_http_requests_total", refused) == 1.0


def test_text_lines_are_plain_key_values() -> None:
    configure_logging(service="logs-test", level="DEBUG", json=False)
    out = io.StringIO()
    access_log.writer = LineWriter(out)
    access_log.line(
        method="GET", path="/health", status=200, duration_ms=0.5, request_id="r", trace_id="t"
    )
    access_log.writer.flush()
    line = out.getvalue().strip()
    assert line.endswith(
        "debug   request service=logs-test method=GET path=/health status=200 "
        "duration_ms=0.5 request_id=r trace_id=t"
    )
    assert "\x1b[" not in line  # no terminal colouring


def written_access_line(*, json_lines: bool, **fields: Any) -> str:
    """The access line `access_log.line(**fields)` writes with text or JSON logs."""
    configure_logging(service="logs-test", level="INFO", json=json_lines)
    out = io.StringIO()
    access_log.writer = LineWriter(out)
    access_log.line(**fields)
    access_log.writer.flush()
    return out.getvalue().strip()


def test_the_text_access_line_reads_as_any_other_text_line() -> None:
    """The access line is formatted in one step in text mode: the same line the text renderer
    writes for the same fields."""
    from taskflow_kit.logs import _text_line

    line = written_access_line(
        json_lines=False,
        method="POST",
        path="/api/v1/tasks/",
        status=201,
        duration_ms=1.25,
        request_id="r",
        trace_id="t",
    )
    timestamp = line.split(" ", 1)[0]
    expected = _text_line(
        {
            "service": "logs-test",
            "method": "POST",
            "path": "/api/v1/tasks/",
            "status": 201,
            "duration_ms": 1.25,
            "request_id": "r",
            "trace_id": "t",
            "event": "request",
            "level": "info",
            "timestamp": timestamp,
        }
    )
    assert line == expected


def test_the_json_access_line_is_the_line_the_json_renderer_writes() -> None:
    """The JSON access line is formatted in one step too: byte for byte what `json.dumps` of
    the same fields gives, escapes included."""
    from taskflow_kit.logs import _json_line

    line = written_access_line(
        json_lines=True,
        method="GET",
        path='/api/v1/tasks/"odd"\\path/\u00e9\u2603',
        status=404,
        duration_ms=12.3,
        request_id="r-1",
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )
    fields = json.loads(line)
    assert line == _json_line(
        {
            "service": "logs-test",
            "method": "GET",
            "path": '/api/v1/tasks/"odd"\\path/\u00e9\u2603',
            "status": 404,
            "duration_ms": 12.3,
            "request_id": "r-1",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "event": "request",
            "level": "info",
            "timestamp": fields["timestamp"],
        }
    )


async def test_lines_of_one_loop_turn_go_out_in_one_write() -> None:
    class CountingStream(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            return super().write(text)

    stream = CountingStream()
    writer = LineWriter(stream, delay=0.01)
    for index in range(100):
        writer.write(f"line {index}")
    assert stream.writes == 0  # nothing written yet: batched
    for _ in range(200):  # the batch is due after 10 ms; allow up to 2 s on a busy machine
        if stream.writes:
            break
        await asyncio.sleep(0.01)
    assert stream.writes == 1
    assert stream.getvalue().splitlines() == [f"line {index}" for index in range(100)]


def test_outside_a_loop_a_line_is_written_at_once() -> None:
    stream = io.StringIO()
    LineWriter(stream).write("started")
    assert stream.getvalue() == "started\n"
