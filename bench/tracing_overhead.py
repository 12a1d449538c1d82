"""The off path of tracing (no OTEL_EXPORTER_OTLP_ENDPOINT): what the trace context adds to one
request through the kit's RequestContextMiddleware, measured in-process and interleaved.

- `baseline`: the middleware's request-id and access-log work alone, as it was before tracing
  (a copy of its body without the trace context), around a trivial ASGI app.
- `untraced`: the kit's RequestContextMiddleware with `tracing.start_request` swapped for one
  that only returns a fixed id with a no-op `end()`: isolates what the trace context costs.
- `traced`: the kit's RequestContextMiddleware (parse `traceparent` with OpenTelemetry's
  propagator, a NonRecordingSpan made current, trace_id bound into the log context).
- `inject`: one `tracing.inject_headers` (what ResilientClient and the gateway add per call).

Logging goes to a null sink (JSON rendering still happens). Prints CPU µs per request (median
of the rounds) and the ratio traced/baseline.
Usage: uv run --frozen python bench/tracing_overhead.py [--rounds 5] [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.types import Message, Receive, Scope, Send
from taskflow_kit import tracing
from taskflow_kit.context import request_id_var
from taskflow_kit.logs import (
    LineWriter,
    RequestContextMiddleware,
    access_log,
    normalise_request_id,
)

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def baseline(scope: Scope, receive: Receive, send: Send) -> None:
    """The middleware before tracing: request id, access line."""
    incoming = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            incoming = value.decode("latin-1")
    request_id = normalise_request_id(incoming)
    token = request_id_var.set(request_id)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    try:
        await app(scope, receive, send)
    finally:
        access_log.line(
            method=scope["method"],
            path=scope["path"],
            status=204,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            request_id=request_id,
            trace_id="0" * 32,
        )
        structlog.contextvars.unbind_contextvars("request_id")
        request_id_var.reset(token)


async def receive() -> Message:
    return {"type": "http.request", "body": b""}


async def send(message: Message) -> None:
    return None


def scope() -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/tasks",
        "headers": [(b"traceparent", TRACEPARENT), (b"accept", b"*/*")],
    }


class NoTrace:
    """What `tracing.start_request` returns, without a trace context."""

    trace_id = "0" * 32

    def end(self) -> None:
        return None


def no_trace(*args: Any, **kwargs: Any) -> NoTrace:
    return NoTrace()


async def untraced(scope: Scope, receive: Receive, send: Send) -> None:
    real = tracing.start_request
    tracing.start_request = no_trace  # type: ignore[assignment]
    try:
        await _middleware(scope, receive, send)
    finally:
        tracing.start_request = real


_middleware = RequestContextMiddleware(app)


async def per_request(
    handler: Callable[[Scope, Receive, Send], Awaitable[None]], requests: int
) -> float:
    started = time.process_time()
    for _ in range(requests):
        await handler(scope(), receive, send)
    return (time.process_time() - started) / requests * 1e6


def inject_cost(requests: int) -> float:
    with tracing.request_span(TRACEPARENT.decode(), None, name="bench"):
        started = time.process_time()
        for _ in range(requests):
            tracing.inject_headers({})
        return (time.process_time() - started) / requests * 1e6


async def main(rounds: int, requests: int) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(io.StringIO()),
        cache_logger_on_first_use=True,
    )
    access_log.service = "bench"
    access_log.writer = LineWriter(io.StringIO())  # JSON lines rendered, written nowhere
    assert tracing.configure_tracing() is False, "unset OTEL_EXPORTER_OTLP_ENDPOINT"
    traced = RequestContextMiddleware(app)
    figures: dict[str, list[float]] = {
        "baseline": [],
        "untraced": [],
        "traced": [],
        "inject": [],
    }
    await per_request(baseline, 1000)  # warm-up
    await per_request(traced, 1000)
    for _ in range(rounds):
        figures["baseline"].append(await per_request(baseline, requests))
        figures["untraced"].append(await per_request(untraced, requests))
        figures["traced"].append(await per_request(traced, requests))
        figures["inject"].append(inject_cost(requests))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"{name:>9}: {value:7.2f} CPU µs per request")
    print(f"traced/baseline: {medians['traced'] / medians['baseline']:.2f}x")
    print(f"traced/untraced: {medians['traced'] / medians['untraced']:.2f}x")
    added = medians["traced"] - medians["untraced"]
    print(f"trace context added: {added:.2f} CPU µs per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests))
