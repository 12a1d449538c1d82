"""Trace context in the request middleware: a valid `traceparent` is continued, an invalid one
replaced by a new trace, the trace id is on the log lines and on outgoing calls; spans are
exported only when the SDK is configured."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from taskflow_kit import tracing
from taskflow_kit.logs import RequestContextMiddleware
from taskflow_kit.resilience import ResilientClient

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


async def echo(request: Request) -> JSONResponse:
    structlog.get_logger("test.handler").info("inside")
    return JSONResponse(
        {
            "trace_id": structlog.contextvars.get_contextvars().get("trace_id"),
            "outgoing": dict(tracing.outgoing_headers()),
        }
    )


@pytest.fixture(autouse=True)
def default_structlog() -> Iterator[None]:
    """structlog's defaults for these tests: a service's `configure_logging` in an earlier test
    (level WARNING, a filtering logger) would hide the handler's info line from capture_logs."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**saved)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = RequestContextMiddleware(Starlette(routes=[Route("/echo", echo)]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kit") as c:
        yield c


@pytest.fixture
def off() -> Iterator[None]:
    tracing.disable_tracing()
    yield
    tracing.disable_tracing()


def outgoing(body: dict[str, object]) -> re.Match[str]:
    headers = body["outgoing"]
    assert isinstance(headers, dict)
    match = TRACEPARENT.match(headers["traceparent"])
    assert match is not None, headers
    return match


async def test_a_valid_traceparent_is_continued_with_a_new_span(
    client: httpx.AsyncClient, off: None
) -> None:
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        response = await client.get("/echo", headers={"traceparent": VALID, "tracestate": "a=b"})
    body = response.json()
    assert body["trace_id"] == TRACE_ID
    match = outgoing(body)
    assert match.group(1) == TRACE_ID
    assert match.group(2) != PARENT_SPAN  # this service's own span id
    assert match.group(3) == "01"
    assert body["outgoing"]["tracestate"] == "a=b"
    (line,) = [entry for entry in logs if entry["event"] == "inside"]
    assert line["trace_id"] == TRACE_ID
    assert structlog.contextvars.get_contextvars().get("trace_id") is None  # unbound after


def test_untraced_headers_are_the_ones_opentelemetry_writes(off: None) -> None:
    """Off, the kit writes `traceparent`/`tracestate` itself (no span objects per request):
    byte for byte what OpenTelemetry's propagator writes for the same span."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    for flags in ("01", "00"):
        for state in ("a=b,c=d", None):
            with tracing.request_span(f"00-{TRACE_ID}-{PARENT_SPAN}-{flags}", state, name="x"):
                ours = dict(tracing.outgoing_headers())
            span_id = int(ours["traceparent"].split("-")[2], 16)
            expected: dict[str, str] = {}
            context = SpanContext(
                int(TRACE_ID, 16),
                span_id,
                is_remote=False,
                trace_flags=TraceFlags(int(flags, 16)),
                trace_state=TraceState.from_header([state]) if state else None,
            )
            TraceContextTextMapPropagator().inject(
                expected, context=trace.set_span_in_context(NonRecordingSpan(context))
            )
            assert ours == expected
            assert span_id != int(PARENT_SPAN, 16)


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        f"00-{'0' * 32}-{PARENT_SPAN}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE_ID}-{PARENT_SPAN}-01",  # the forbidden version
        f"00-{TRACE_ID.upper()}-{PARENT_SPAN}-01",  # upper case hex
        f"00-{TRACE_ID}-{PARENT_SPAN}",  # no flags
    ],
)
async def test_an_invalid_traceparent_starts_a_new_trace(
    client: httpx.AsyncClient, off: None, bad: str
) -> None:
    response = await client.get("/echo", headers={"traceparent": bad})
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    assert body["trace_id"] != TRACE_ID
    assert body["trace_id"] != "0" * 32
    assert outgoing(body).group(1) == body["trace_id"]


async def test_without_traceparent_a_hex_request_id_is_the_trace_id(
    client: httpx.AsyncClient, off: None
) -> None:
    request_id = "a" * 32
    response = await client.get("/echo", headers={"X-Request-ID": request_id})
    assert response.json()["trace_id"] == request_id
    other = await client.get("/echo", headers={"X-Request-ID": "not-hex"})
    assert re.fullmatch(r"[0-9a-f]{32}", other.json()["trace_id"])


async def test_no_spans_without_the_sdk(client: httpx.AsyncClient, off: None) -> None:
    assert tracing.configure_tracing() is False  # no OTEL_EXPORTER_OTLP_ENDPOINT in tests
    await client.get("/echo", headers={"traceparent": VALID})
    assert tracing.current_trace_id() is None  # nothing left current outside the request


async def test_with_the_sdk_a_server_span_is_exported_as_the_child(
    client: httpx.AsyncClient,
) -> None:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(service="kit-test", exporter=exporter) is True
    try:
        response = await client.get("/echo", headers={"traceparent": VALID})
    finally:
        tracing.disable_tracing()
    body = response.json()
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /echo"
    assert span.context is not None
    assert span.parent is not None
    assert f"{span.context.trace_id:032x}" == TRACE_ID == body["trace_id"]
    assert f"{span.parent.span_id:016x}" == PARENT_SPAN
    # Outgoing calls are children of this span.
    assert outgoing(body).group(2) == f"{span.context.span_id:016x}"
    assert span.resource.attributes["service.name"] == "kit-test"


async def test_resilient_client_forwards_the_current_trace(off: None) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(204)

    client = ResilientClient(name="u", base_url="http://u", transport=httpx.MockTransport(handler))
    try:
        with tracing.request_span(VALID, None, name="GET /x"):
            await client.request("GET", "/")
        await client.request("GET", "/")  # outside a request: nothing to forward
    finally:
        await client.aclose()
    first, second = seen
    assert first is not None
    match = TRACEPARENT.match(first)
    assert match is not None
    assert match.group(1) == TRACE_ID
    assert match.group(2) != PARENT_SPAN
    assert second is None


def test_a_service_passes_its_endpoint_and_the_environment_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    made: list[str] = []

    class Recording(InMemorySpanExporter):
        def __init__(self, *, endpoint: str) -> None:
            super().__init__()
            made.append(endpoint)

    monkeypatch.setattr(trace_exporter, "OTLPSpanExporter", Recording)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-the-environment:4318")
    monkeypatch.setattr(tracing, "_configured", False)
    try:
        assert tracing.configure_tracing(service="kit-test", endpoint="http://collector:4318/")
        # The first call decides: the request middleware's later call changes nothing.
        assert tracing.configure_tracing(service="other") is True
    finally:
        tracing.disable_tracing()
    assert made == ["http://collector:4318/v1/traces"]


def test_building_a_middleware_configures_nothing_and_the_environment_is_never_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18 point 4: the kit takes parameters; a middleware constructor is not where global
    tracing is set up, and an endpoint comes from the service's settings, not os.environ."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-the-environment:4318")
    monkeypatch.setattr(tracing, "_configured", False)
    monkeypatch.setattr(tracing, "_tracer", None)

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    RequestContextMiddleware(app, service="kit-test")
    assert tracing._configured is False
    assert tracing.configure_tracing(service="kit-test") is False  # nothing passed: off
