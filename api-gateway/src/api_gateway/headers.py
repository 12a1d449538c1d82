"""Header rewriting at the proxy boundary: hop-by-hop removal, forwarding and trace headers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from taskflow_kit import tracing

RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1 connection-specific fields, plus the ones a proxy must not pass on.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the gateway itself (a client-supplied value would be a lie about where it came from),
# or handled by the gateway towards the client (Expect: 100-continue).
_REPLACED_ON_REQUEST = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
        b"forwarded",
        b"expect",
        b"content-length",
    }
)
# uvicorn adds its own Date and Server to every response.
_REPLACED_ON_RESPONSE = frozenset({b"date", b"server"})


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    return tokens


def trace_headers(
    incoming: str | None, tracestate: str | None, request_id: str | None
) -> list[tuple[str, str]]:
    """W3C trace context for the upstream call: the gateway's own span (the kit's request
    middleware continued the client's valid `traceparent` or started a trace), injected by
    OpenTelemetry's propagator. Outside a request context it is derived here the same way."""
    carrier = tracing.outgoing_headers()
    if not carrier:
        with tracing.request_span(incoming, tracestate, name="proxy", request_id=request_id):
            carrier = tracing.outgoing_headers()
    return list(carrier.items())


def upstream_request_headers(
    headers: RawHeaders,
    *,
    forwarded_for: str | None,
    scheme: str,
    request_id: str,
    body_length: int | None = None,
) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop ones, plus X-Forwarded-*, X-Request-ID and
    traceparent, as the upstream client takes them. `forwarded_for` replaces the client's
    X-Forwarded-For (api_gateway.forwarded: its last entry is the client the gateway vouches
    for). Host is kept so upstreams build client-facing URLs (Location). Content-Length is the
    gateway's own: the client library sets it for a body read whole; a streamed body keeps the
    length the client declared (`body_length`)."""
    connection_tokens = _connection_tokens(headers)
    host: bytes | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if name in HOP_BY_HOP or name in connection_tokens:
            continue
        if name in _REPLACED_ON_REQUEST:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
            continue
        if b"\r" in value or b"\n" in value:
            continue  # the server's parser already refuses these; never split a header block
        if name == b"host":
            host = value
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    if forwarded_for:
        out.append(("x-forwarded-for", forwarded_for))
    out.append(("x-forwarded-proto", scheme))
    if host:
        out.append(("x-forwarded-host", host.decode("latin-1")))
    out.append(("x-request-id", request_id))
    out.extend(trace_headers(traceparent, tracestate, request_id))
    if body_length is not None:
        out.append(("content-length", str(body_length)))
    return out


def client_response_headers(headers: Sequence[tuple[bytes, bytes]]) -> RawHeaders:
    """The upstream's response headers minus hop-by-hop ones and those uvicorn sets, names in
    lower case (one pass; a `Connection` header, rare in an answer, takes a second)."""
    out: RawHeaders = []
    named_by_connection = False
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in _REPLACED_ON_RESPONSE:
            named_by_connection = named_by_connection or lower == b"connection"
            continue
        out.append((lower, value))
    if named_by_connection:
        tokens = _connection_tokens(
            (name.lower(), value) for name, value in headers if name.lower() == b"connection"
        )
        out = [(name, value) for name, value in out if name not in tokens]
    return out
