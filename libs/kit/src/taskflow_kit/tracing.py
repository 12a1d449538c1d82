"""W3C trace context across the gateway and the services, with OpenTelemetry spans exported
over OTLP/HTTP only when an endpoint is configured (a service passes its settings'
`OTEL_EXPORTER_OTLP_ENDPOINT` to `configure_tracing` when it builds its app).

Off (no endpoint): no SDK is configured. Each request still gets a trace context: the incoming
`traceparent` (parsed by OpenTelemetry's own W3C propagator) is continued with a new span id,
or a trace is started; its trace id is bound into the log context and the context is injected
into outgoing calls. Nothing is recorded or exported.

On: the SDK's tracer starts a real server span per request (child of the incoming context) and
a batch processor exports it; outgoing calls carry that span as their parent.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
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


@contextmanager
def request_span(
    traceparent: str | None,
    tracestate: str | None,
    *,
    name: str,
    request_id: str | None = None,
) -> Iterator[str]:
    """The trace context of one incoming request, current for its duration; yields the trace
    id as 32 hex digits. An invalid or missing `traceparent` starts a new trace (off path: a
    32-hex request id is reused as the trace id, so logs and traces line up)."""
    carrier: dict[str, str] = {}
    if traceparent:
        carrier["traceparent"] = traceparent
        if tracestate:
            carrier["tracestate"] = tracestate
    parent_ctx = _propagator.extract(carrier) if carrier else otel_context.Context()
    parent = trace.get_current_span(parent_ctx).get_span_context()
    span: trace.Span
    if _tracer is not None:
        span = _tracer.start_span(name, context=parent_ctx, kind=SpanKind.SERVER)
    elif parent.is_valid:
        span = NonRecordingSpan(
            SpanContext(
                parent.trace_id,
                _random_id(64),
                is_remote=False,
                trace_flags=parent.trace_flags,
                trace_state=parent.trace_state,
            )
        )
    else:
        if request_id and _HEX32.match(request_id) and request_id != "0" * 32:
            trace_id = int(request_id, 16)
        else:
            trace_id = _random_id(128)
        span = NonRecordingSpan(
            SpanContext(
                trace_id,
                _random_id(64),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
    token = otel_context.attach(trace.set_span_in_context(span, parent_ctx))
    try:
        yield format_trace_id(span.get_span_context().trace_id)
    finally:
        span.end()
        otel_context.detach(token)


def inject_headers(headers: MutableMapping[str, str]) -> None:
    """Add `traceparent` (and `tracestate`) for the current trace context, if there is one."""
    _propagator.inject(headers)


def outgoing_headers() -> Mapping[str, str]:
    """The trace headers an outgoing call carries now (empty outside a request)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None
