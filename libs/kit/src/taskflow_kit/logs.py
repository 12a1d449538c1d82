"""structlog JSON logging and the request-id middleware that every service installs."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow_kit import tracing
from taskflow_kit.context import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
# Probes and scrapes arrive every few seconds from the gateway and Prometheus: log them at debug.
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json"})
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_logger = structlog.get_logger("taskflow.access")


def configure_logging(*, service: str, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog (and stdlib logging through it) once per process."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")


def normalise_request_id(value: str | None) -> str:
    """Keep a well-formed incoming id (so a trace spans services); otherwise make one."""
    if value and _VALID_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Binds a request id (from `X-Request-ID` or new) and a trace id (from a valid
    `traceparent` or a new trace: taskflow_kit.tracing), returns the request id, and logs one
    access line."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log
        tracing.configure_tracing(service=structlog.contextvars.get_contextvars().get("service"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        request_id = normalise_request_id(incoming)
        with tracing.request_span(
            traceparent,
            tracestate,
            name=f"{scope['method']} {scope['path']}",
            request_id=request_id,
        ) as trace_id:
            await self._handle(scope, receive, send, request_id, trace_id)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, trace_id: str
    ) -> None:
        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id, trace_id=trace_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log:
                emit = access_logger.debug if scope["path"] in QUIET_PATHS else access_logger.info
                emit(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id", "trace_id")
            request_id_var.reset(token)
