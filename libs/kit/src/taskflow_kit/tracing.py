"""W3C trace context across the gateway and the services, with OpenTelemetry spans exported
over OTLP/HTTP only when an endpoint is configured (a service passes its settings'
`OTEL_EXPORTER_OTLP_ENDPOINT` to `configure_tracing` when it builds its app).

Off (no endpoint): no SDK is configured. Each request still gets a trace context: the incoming
`traceparent` (parsed by OpenTelemetry's own W3C propagator) is continued with a new span id,
or a trace is started; its trace id is bound into the log context and the context is injected
(by the same propagator) into outgoing calls. Nothing is recorded or exported, so the context
is held in one context variable of this module rather than as OpenTelemetry span and context
objects attached per request: those cost a few microseconds on every request, and the gateway
pays for each one (issue 17).

On: the SDK's tracer starts a real server span per request (child of the incoming context) and
a batch processor exports it; outgoing calls carry that span as their parent.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

_HEX32 = re.compile(r"^[0-9a-f]{32}$")

_propagator = TraceContextTextMapPropagator()
# The SDK's tracer once configured; None means tracing is off (the API-only path).
_tracer: trace.Tracer | None = None
_configured = False


def configure_tracing(
    *,
    service: str | None = None,
    endpoint: str | None = None,
    exporter: SpanExporter | None = None,
) -> bool:
    """Set up the SDK once per process when an OTLP/HTTP `endpoint` is given (or an exporter,
    for tests), naming spans' service `service`; return whether spans are recorded. Without
    either nothing is set up. The first call decides; later ones without an exporter keep it.

    Needs the `[tracing]` extra to record spans; the off path needs only the API."""
    global _tracer, _configured
    if exporter is None and _configured:
        return _tracer is not None
    _configured = True
    if exporter is None and not endpoint:
        _tracer = None
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service or "taskflow"}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        traces = f"{(endpoint or '').rstrip('/')}/v1/traces"  # as the SDK derives it
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracer = provider.get_tracer("taskflow_kit")
    return True


def disable_tracing() -> None:
    """Back to the off path (tests)."""
    global _tracer, _configured
    _tracer = None
    _configured = True


def _random_id(bits: int) -> int:
    value = 0
    while value == 0:  # all-zero ids are invalid in W3C trace context
        value = random.getrandbits(bits)
    return value


def format_trace_id(trace_id: int) -> str:
    return f"{trace_id:032x}"


class _Untraced:
    """The trace context of a request while tracing is off: this service's span of the trace,
    never recorded."""

    __slots__ = ("flags", "span_id", "state", "trace_hex")

    def __init__(self, trace_hex: str, flags: int, state: TraceState | None) -> None:
        self.trace_hex = trace_hex  # the trace id as 32 hex digits
        self.span_id = _random_id(64)
        self.flags = flags
        self.state = state

    def inject(self, carrier: MutableMapping[str, str]) -> None:
        """The headers OpenTelemetry's propagator writes for this span (a test compares them),
        without building its span and context objects for one call."""
        carrier["traceparent"] = f"00-{self.trace_hex}-{self.span_id:016x}-{self.flags:02x}"
        if self.state:
            carrier["tracestate"] = self.state.to_header()


_untraced: ContextVar[_Untraced | None] = ContextVar("taskflow_untraced", default=None)


class RequestTrace:
    """The trace context of one request, current from `start_request` until `end()`."""

    __slots__ = ("_span", "_token", "trace_id")

    def __init__(
        self,
        trace_id: str,
        token: Token[Any],
        span: trace.Span | None = None,
    ) -> None:
        self.trace_id = trace_id  # 32 hex digits
        self._token = token
        self._span = span

    def end(self) -> None:
        if self._span is None:
            _untraced.reset(self._token)
            return
        self._span.end()
        otel_context.detach(self._token)


def start_request(
    traceparent: str | None,
    tracestate: str | None,
    *,
    method: str,
    path: str,
    request_id: str | None = None,
) -> RequestTrace:
    """Make the trace context of one incoming request current (a server span named
    `<method> <path>` when tracing is on); `end()` the result when the request ends. An invalid
    or missing `traceparent` starts a new trace (off path: a 32-hex request id is reused as the
    trace id, so logs and traces line up)."""
    return _start(traceparent, tracestate, request_id, None, method, path)


def _start(
    traceparent: str | None,
    tracestate: str | None,
    request_id: str | None,
    name: str | None,
    method: str,
    path: str,
) -> RequestTrace:
    parent: SpanContext | None = None
    parent_ctx: otel_context.Context | None = None
    if traceparent:
        carrier = {"traceparent": traceparent}
        if tracestate:
            carrier["tracestate"] = tracestate
        parent_ctx = _propagator.extract(carrier)
        parent = trace.get_current_span(parent_ctx).get_span_context()
    if _tracer is not None:
        if parent_ctx is None:
            parent_ctx = otel_context.Context()
        span = _tracer.start_span(
            name if name is not None else f"{method} {path}",
            context=parent_ctx,
            kind=SpanKind.SERVER,
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent_ctx))
        return RequestTrace(format_trace_id(span.get_span_context().trace_id), token, span)
    untraced: _Untraced
    if parent is not None and parent.is_valid:
        untraced = _Untraced(
            format_trace_id(parent.trace_id), parent.trace_flags, parent.trace_state
        )
    elif request_id and _HEX32.match(request_id) and request_id != "0" * 32:
        untraced = _Untraced(request_id, TraceFlags.SAMPLED, None)
    else:
        untraced = _Untraced(format_trace_id(_random_id(128)), TraceFlags.SAMPLED, None)
    return RequestTrace(untraced.trace_hex, _untraced.set(untraced))


@contextmanager
def request_span(
    traceparent: str | None,
    tracestate: str | None,
    *,
    name: str,
    request_id: str | None = None,
) -> Iterator[str]:
    """`start_request` as a context manager with the span's name given; yields the trace id
    as 32 hex digits."""
    started = _start(traceparent, tracestate, request_id, name, "", "")
    try:
        yield started.trace_id
    finally:
        started.end()


def inject_headers(headers: MutableMapping[str, str]) -> None:
    """Add `traceparent` (and `tracestate`) for the current trace context, if there is one."""
    untraced = _untraced.get()
    if untraced is None:
        _propagator.inject(headers)
    else:
        untraced.inject(headers)


def outgoing_headers() -> Mapping[str, str]:
    """The trace headers an outgoing call carries now (empty outside a request)."""
    carrier: dict[str, str] = {}
    inject_headers(carrier)
    return carrier


def current_trace_id() -> str | None:
    untraced = _untraced.get()
    if untraced is not None:
        return untraced.trace_hex
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None
