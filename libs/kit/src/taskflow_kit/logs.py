"""Logging for every service: structlog lines (JSON in production, plain `key=value` text in
development), the request middleware (request id, trace context, access line, metrics), and the
batched writer both go through.

The access line is the one written per request, so it is the one whose cost is bounded: it is
rendered straight from the values the middleware holds (no processor chain, no copy of the
context) and, like every line, written in batches: the lines of one turn of the event loop go
out in one write at the end of that turn.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from json.encoder import encode_basestring_ascii as _json_string  # what `json.dumps` uses
from typing import Any, TextIO

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow_kit import tracing
from taskflow_kit.context import request_id_var
from taskflow_kit.metrics import RequestMetrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower().encode()
# Probes and scrapes arrive every few seconds from the gateway and Prometheus: log them at debug.
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json"})
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The method an access line and the metrics give a WebSocket connection (its handshake is a GET).
WEBSOCKET = "WEBSOCKET"

Renderer = Callable[[dict[str, Any]], str]


class LineWriter:
    """Lines to a stream, written in batches: the first pending line schedules one write
    `delay` seconds later on the running event loop, so a busy server makes one write system
    call for many lines (a line reaches the stream at most `delay` late). Outside a running
    loop (start-up, threads) a line is written at once; what is pending is written at exit
    too (`configure_logging` registers it)."""

    def __init__(self, stream: TextIO, *, delay: float = 0.05) -> None:
        self.stream = stream
        self.delay = delay
        self._pending: list[str] = []
        # The loop the pending write is scheduled on (a loop closed since, as tests close
        # theirs, never runs it: the next line schedules one on the running loop).
        self._scheduled_on: asyncio.AbstractEventLoop | None = None

    def write(self, line: str) -> None:
        self._pending.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._scheduled_on is not loop:
            self._scheduled_on = loop
            loop.call_later(self.delay, self.flush)

    def flush(self) -> None:
        self._scheduled_on = None
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not fail a request
            pass


class _WriterLogger:
    """structlog's logger end: the rendered line goes to the writer, whatever the level."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.write(message)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def _json_line(event: dict[str, Any]) -> str:
    return json.dumps(event, default=repr)


def _text_line(event: dict[str, Any]) -> str:
    """`<time> <level> <event> key=value ...` and the traceback below, if any: what a developer
    reads in a terminal, without a console renderer's padding and colouring per line."""
    timestamp = event.pop("timestamp", "")
    level = event.pop("level", "")
    message = event.pop("event", "")
    exception = event.pop("exception", None)
    line = " ".join([f"{timestamp} {level:<7} {message}", *(f"{k}={v}" for k, v in event.items())])
    return f"{line}\n{exception}" if exception else line


def _render_json(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    return _json_line(dict(event))


def _render_text(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    return _text_line(dict(event))


_second = -1
_second_text = ""


def utc_timestamp() -> str:
    """Now as ISO 8601 UTC with microseconds, as structlog's `TimeStamper(fmt="iso")` writes it;
    the date part is formatted once per second."""
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_second_text}.{int((now - second) * 1_000_000):06d}Z"


class AccessLog:
    """The access line of each request, with the same fields and format as other lines."""

    def __init__(self) -> None:
        self.service: str | None = None
        self.info_enabled = True
        self.debug_enabled = False
        self.render: Renderer = _json_line
        self.writer = LineWriter(sys.stderr)

    def line(
        self,
        *,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        request_id: str,
        trace_id: str,
    ) -> None:
        level = "debug" if path in QUIET_PATHS else "info"
        if not (self.debug_enabled if level == "debug" else self.info_enabled):
            return
        if self.render is _text_line:  # the development default, formatted in one step
            self.writer.write(
                f"{utc_timestamp()} {level:<7} request service={self.service} method={method} "
                f"path={path} status={status} duration_ms={duration_ms} "
                f"request_id={request_id} trace_id={trace_id}"
            )
            return
        if self.render is _json_line and self.service is not None:
            # The line `_json_line` writes for these fields, formatted in one step: only the
            # strings need JSON's escaping (the C function `json.dumps` uses); an int's and a
            # float's text is the one `json.dumps` writes. A third of the cost of building the
            # dictionary and encoding it.
            self.writer.write(
                f'{{"service": {_json_string(self.service)}, "method": {_json_string(method)}, '
                f'"path": {_json_string(path)}, "status": {int(status)}, '
                f'"duration_ms": {duration_ms!r}, "request_id": {_json_string(request_id)}, '
                f'"trace_id": {_json_string(trace_id)}, "event": "request", "level": "{level}", '
                f'"timestamp": "{utc_timestamp()}"}}'
            )
            return
        self.writer.write(
            self.render(
                {
                    "service": self.service,
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "request_id": request_id,
                    "trace_id": trace_id,
                    "event": "request",
                    "level": level,
                    "timestamp": utc_timestamp(),
                }
            )
        )


access_log = AccessLog()


def configure_logging(*, service: str, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog (and stdlib logging through it) once per process."""
    threshold = logging.getLevelName(level.upper())
    writer = LineWriter(sys.stderr)
    atexit.register(writer.flush)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _render_json if json else _render_text,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda *_: _WriterLogger(writer),
        # Not cached: a cached logger keeps the processors and writer of the configuration it
        # first saw, so a later `configure_logging` (each app a test builds) or structlog's
        # `capture_logs` would not reach it. No request path logs through structlog (the
        # access line has its own writer), so caching saved nothing measurable.
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    access_log.service = service
    access_log.info_enabled = threshold <= logging.INFO
    access_log.debug_enabled = threshold <= logging.DEBUG
    access_log.render = _json_line if json else _text_line
    access_log.writer = writer
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")


def normalise_request_id(value: str | None) -> str:
    """Keep a well-formed incoming id (so a trace spans services); otherwise make one."""
    if value and _VALID_REQUEST_ID.match(value):
        return value
    # 128 bits, as a uuid4 has: an id must be unique, not secret, so the process's generator
    # (reseeded in a forked child) serves, without a system call per request as urandom makes.
    return f"{random.getrandbits(128):032x}"


class RequestContext:
    """One request's (or WebSocket's) context, from its start to its access line: the request id
    (from `X-Request-ID` or new) and trace id (from a valid `traceparent` or a new trace:
    taskflow_kit.tracing) bound for every log line, the header returning the id, and `finish`,
    which records the metrics and writes the access line. `RequestContextMiddleware` is its ASGI
    form; the gateway's proxied requests use it directly (api_gateway.routing.ProxyEdge)."""

    __slots__ = (
        "_started",
        "_token",
        "_trace",
        "header",
        "method",
        "path",
        "request_id",
        "status",
        "trace_id",
    )

    def __init__(self, scope: Scope, method: str) -> None:
        incoming = traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        self.method = method
        self.path: str = scope["path"]
        self.request_id = request_id = normalise_request_id(incoming)
        self._trace = tracing.start_request(
            traceparent, tracestate, method=method, path=self.path, request_id=request_id
        )
        self.trace_id = trace_id = self._trace.trace_id
        self._token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id, trace_id=trace_id)
        self.header = (_REQUEST_ID_HEADER, request_id.encode("latin-1"))
        self.status = 500  # until an answer starts
        self._started = time.perf_counter()

    def finish(self, *, metrics: RequestMetrics | None, route: object, log: bool) -> None:
        """Metrics and the access line (the duration counted from the context's start); the
        context's bindings end."""
        elapsed = time.perf_counter() - self._started
        if metrics is not None:
            metrics.record(self.method, route, self.status, elapsed)
        if log:
            access_log.line(
                method=self.method,
                path=self.path,
                status=self.status,
                duration_ms=round(elapsed * 1000, 2),
                request_id=self.request_id,
                trace_id=self.trace_id,
            )
        structlog.contextvars.unbind_contextvars("request_id", "trace_id")
        request_id_var.reset(self._token)
        self._trace.end()


class RequestContextMiddleware:
    """Per HTTP request and WebSocket connection, a `RequestContext`: binds a request id and a
    trace id, returns the request id, records the metrics (when `service` is given) and writes
    one access line. A WebSocket's line and metrics come when it ends, with method `WEBSOCKET`,
    status 101 if it was accepted (else the refusal's status, 403 for a close before accepting)
    and its lifetime as duration."""

    def __init__(
        self, app: ASGIApp, *, service: str | None = None, access_log: bool = True
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.metrics = RequestMetrics(service) if service is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        context = RequestContext(scope, scope["method"] if kind == "http" else WEBSOCKET)
        header = context.header

        async def send_with_id(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start" or kind == "websocket.http.response.start":
                context.status = message["status"]
                message["headers"] = _with_header(message.get("headers", ()), header)
            elif kind == "websocket.accept":
                context.status = 101
                message["headers"] = _with_header(message.get("headers", ()), header)
            elif kind == "websocket.close" and context.status == 500:
                context.status = 403  # closed before accepting: the server answers 403
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            context.finish(metrics=self.metrics, route=scope.get("route"), log=self.access_log)


def _with_header(
    headers: Iterable[tuple[bytes, bytes]], header: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    """The headers with `header` in place of any of the same name (an upstream's own id)."""
    name = header[0]
    out = [pair for pair in headers if pair[0].lower() != name]
    out.append(header)
    return out
