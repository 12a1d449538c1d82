"""Forwarding through a real gateway to a real stand-in backend: headers, paths, bodies."""

from __future__ import annotations

import hashlib
import io
import re

import httpx
from conftest import BackendStarter, GatewayFactory
from gateway_doubles import raw_request


def header(record: dict, name: str) -> list[str]:
    return [value for key, value in record["headers"] if key == name]


async def test_routes_each_prefix_to_its_upstream_with_and_without_slash(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _users, users_server = await start_backend("users")
    _tasks, tasks_server = await start_backend("tasks")
    _stats, stats_server = await start_backend("stats")
    async with make_gateway(
        users=[users_server.url], tasks=[tasks_server.url], stats=[stats_server.url]
    ) as gw:
        expected = {
            "/api/v1/auth/login": "users",
            "/api/v1/users": "users",
            "/api/v1/users/": "users",
            "/api/v1/users/me": "users",
            "/api/v1/tasks": "tasks",
            "/api/v1/tasks/": "tasks",
            "/api/v1/tasks/7/dependencies": "tasks",
            "/api/v1/stats": "stats",
            "/api/v1/stats/": "stats",
        }
        for path, backend in expected.items():
            response = await gw.client.get(path)
            assert response.status_code == 200, path
            assert response.json()["backend"] == backend, path
            assert response.json()["path"] == path  # never rewritten, no redirect


async def test_unrouted_and_internal_paths_are_404_problems_never_proxied(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    tasks, server = await start_backend("tasks")
    async with make_gateway(tasks=[server.url], users=[server.url], stats=[server.url]) as gw:
        for path in [
            "/internal/tasks/aggregates",
            "/api/v1",
            "/api/v1/",
            "/api/v1/tasksx",
            "/api/v2/tasks",
            "/metricsx",
            "/api/v1/internal/x",
        ]:
            response = await gw.client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["status"] == 404
    assert tasks.hits == 0


async def test_forwarding_headers_request_id_and_trace_context(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    async with make_gateway(tasks=[server.url]) as gw:
        response = await gw.client.get(
            "/api/v1/tasks/%41b?q=a%20b&tags=x,y",
            headers={
                "X-Forwarded-For": "203.0.113.9",
                "Connection": "x-private",
                "X-Private": "secret",
                "TE": "trailers",
                "Proxy-Authorization": "Basic abc",
                "Host": "frontend.example:8000",
            },
        )
        assert response.status_code == 200
        seen = backend.requests[-1]
        assert seen["raw_path"] == "/api/v1/tasks/%41b"  # byte for byte
        assert seen["query"] == "q=a%20b&tags=x,y"
        assert header(seen, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
        assert header(seen, "x-forwarded-proto") == ["http"]
        assert header(seen, "host") == ["frontend.example:8000"]
        assert header(seen, "x-forwarded-host") == ["frontend.example:8000"]
        for hop in ("x-private", "te", "proxy-authorization", "connection"):
            assert header(seen, hop) == [], hop
        # A request id is generated, sent upstream and returned to the client.
        request_id = response.headers["x-request-id"]
        assert header(seen, "x-request-id") == [request_id]
        (traceparent,) = header(seen, "traceparent")
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", traceparent)
        # Hop-by-hop response headers are dropped; the rest pass through.
        assert "x-upstream-private" not in response.headers
        assert "keep-alive" not in response.headers
        assert response.headers["etag"] == '"v1"'
        assert response.headers["set-cookie"].startswith("session=from-upstream")

        gw.client.cookies.clear()  # the test client keeps cookies; the gateway must not
        incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        response = await gw.client.get(
            "/api/v1/tasks", headers={"X-Request-ID": "client-id-1", "traceparent": incoming}
        )
        seen = backend.requests[-1]
        assert response.headers["x-request-id"] == "client-id-1"
        assert header(seen, "x-request-id") == ["client-id-1"]
        (traceparent,) = header(seen, "traceparent")
        assert traceparent.startswith("00-0af7651916cd43dd8448eb211c80319c-")
        assert traceparent != incoming  # a new span id for this hop
        # The upstream's cookie was never stored and replayed by the gateway's client.
        assert header(seen, "cookie") == []


async def test_path_tricks_never_change_the_upstream(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    async with make_gateway(tasks=[server.url], users=[server.url], stats=[server.url]) as gw:
        refused = [
            b"GET /api/v1/tasks/..%2f..%2finternal/x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /api/v1/tasks/%2e%2e/%2e%2e/internal/x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /api/v1/tasks/../../internal/x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /api/v1/tasks%2F..%2Finternal HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /api/v1/tasks/a%5c..%5cb HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /api/v1/tasks/%00 HTTP/1.1\r\nHost: a\r\n\r\n",
        ]
        for request in refused:
            status, _body = await raw_request(gw.url, request)
            assert status in (400, 404), request
        not_routed = [
            b"GET //evil.example/api/v1/tasks HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /api/v1/tasks@evil.example/x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /internal/tasks HTTP/1.1\r\nHost: a\r\n\r\n",
        ]
        for request in not_routed:
            status, _ = await raw_request(gw.url, request)
            assert status in (400, 404), request
        assert backend.hits == 0

        # These reach the configured upstream, and only it, with the path as sent.
        status, _ = await raw_request(
            gw.url, b"GET /api/v1/tasks/@evil.example/x HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert status == 200
        assert backend.requests[-1]["raw_path"] == "/api/v1/tasks/@evil.example/x"
        status, _ = await raw_request(
            gw.url, b"GET http://evil.example/api/v1/tasks HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert status == 200
        assert backend.requests[-1]["raw_path"] == "/api/v1/tasks"


async def test_bodies_stream_both_ways_intact(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    async with make_gateway(tasks=[server.url]) as gw:
        small = b'{"title": "x"}'
        response = await gw.client.post("/api/v1/tasks/", content=small)
        assert response.json()["body_length"] == len(small)

        big = bytes(range(256)) * 3000  # 768 000 bytes: above the buffering threshold
        response = await gw.client.put("/api/v1/tasks/1", content=big)
        assert response.status_code == 200
        assert response.json()["body_sha"] == hashlib.sha256(big).hexdigest()

        async def chunks():
            for _ in range(10):
                yield b"y" * 1000

        response = await gw.client.post("/api/v1/tasks/", content=chunks())  # chunked
        assert response.json()["body_length"] == 10_000
        assert header(backend.requests[-1], "transfer-encoding") == []

        async with gw.client.stream("GET", "/api/v1/tasks/stream?bytes=3000000") as streamed:
            total = 0
            async for piece in streamed.aiter_raw():
                total += len(piece)
        assert streamed.status_code == 200
        assert total == 3_000_000


async def test_body_limit_is_413_before_the_service_declared_or_chunked(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    async with make_gateway(tasks=[server.url], max_body_bytes=1000) as gw:
        response = await gw.client.post("/api/v1/tasks/", content=b"x" * 1001)
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"

        async def chunks():
            for _ in range(5):
                yield b"z" * 300

        response = await gw.client.post("/api/v1/tasks/", content=chunks())
        assert response.status_code == 413
        assert backend.hits == 0

        response = await gw.client.post("/api/v1/tasks/", content=b"x" * 1000)
        assert response.status_code == 200


async def test_head_and_status_codes_pass_through(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _backend, server = await start_backend(status=409)
    async with make_gateway(tasks=[server.url]) as gw:
        response = await gw.client.post("/api/v1/tasks/", json={})
        assert response.status_code == 409
        response = await gw.client.head("/api/v1/tasks/1")
        assert response.status_code == 409
        assert response.content == b""


async def test_gateway_health_and_docs_pages(make_gateway: GatewayFactory) -> None:
    async with make_gateway() as gw:
        assert (await gw.client.get("/health")).json() == {"status": "ok"}
        docs = await gw.client.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
        assert (await gw.client.get("/redoc")).status_code == 200
        # Served by the gateway itself (issue 21 point 3): no CDN, a policy that says so.
        for page in ("/docs", "/redoc"):
            html = await gw.client.get(page)
            assert "script-src 'self';" in html.headers["content-security-policy"]
            assert "http" not in html.text, html.text
            bundle = "swagger-ui-bundle.js" if page == "/docs" else "redoc.standalone.js"
            asset = await gw.client.get(f"/docs/assets/{bundle}")
            assert asset.status_code == 200
            assert asset.headers["content-type"] == "text/javascript; charset=utf-8"


async def test_declared_oversize_body_is_refused_without_reading_it(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    async with make_gateway(tasks=[server.url]) as gw:
        request = b"POST /api/v1/tasks/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\n\r\nabc"
        status, body = await raw_request(gw.url, request)
        assert status == 413
        assert b"problem+json" in body
    assert backend.hits == 0


async def test_proxied_requests_get_metrics_request_ids_and_problems(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    from api_gateway.routing import ProxyDispatch

    _backend, server = await start_backend()
    async with make_gateway(tasks=[server.url], max_body_bytes=10) as gw:
        assert (await gw.client.get("/api/v1/tasks/5")).status_code == 200
        # Proxied prefixes never reach the router: ProxyEdge, outside the stack, serves those
        # without an Origin; cross-origin ones reach the innermost middleware, which hands them
        # over inside the request-id and problem+json middlewares.
        assert gw.app.user_middleware[-1].cls is ProxyDispatch
        refused = await gw.client.post("/api/v1/tasks/", content=b"x" * 11)
        assert refused.status_code == 413
        assert refused.json()["request_id"] == refused.headers["x-request-id"]
        metrics = (await gw.client.get("/metrics")).text
        # Labelled by prefix, never by raw path: a bounded set of series.
        assert 'route="/api/v1/tasks",service="api-gateway",status="200"' in metrics
        assert 'route="/api/v1/tasks",service="api-gateway",status="413"' in metrics
        assert "/api/v1/tasks/5" not in metrics


async def test_a_proxied_request_is_answered_alike_with_or_without_origin(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    """The two ways a proxied request goes through the gateway give the same answer: without
    an Origin, ProxyEdge's one layer; with one, the middleware stack (CORS, request context,
    error boundary) down to ProxyDispatch. Same status, problem body and headers but CORS's;
    each request id returned, one access line and one count in the metrics per request."""
    from prometheus_client import REGISTRY
    from taskflow_kit.logs import LineWriter, access_log

    origin = "http://localhost:3000"
    requests = [
        ("GET", "/api/v1/tasks/5", {}, b""),  # proxied: 200
        ("GET", "/api/v1/tasks/5", {"Authorization": "Bearer forged"}, b""),  # 401
        ("POST", "/api/v1/tasks/", {}, b"x" * 11),  # 413
        ("GET", "/api/v1/tasks/%2e%2e/x", {}, b""),  # 400, unsafe path
    ]
    # Bodies name their request id (and the stand-in echoes the request): lengths differ.
    ignored = {
        "date",
        "x-request-id",
        "vary",
        "ratelimit-remaining",
        "ratelimit-reset",
        "content-length",
    }

    def compared(response: httpx.Response) -> list[tuple[str, str]]:
        return [
            (name, value)
            for name, value in response.headers.multi_items()
            if name not in ignored and not name.startswith("access-control-")
        ]

    _backend, server = await start_backend()
    async with make_gateway(tasks=[server.url], max_body_bytes=10, log_level="INFO") as gw:
        lines = io.StringIO()
        access_log.writer = LineWriter(lines)
        series = {"service": "api-gateway", "method": "GET", "route": "/api/v1/tasks"}
        ok = {**series, "status": "200"}
        counted = REGISTRY.get_sample_value("taskflow_http_requests_total", ok) or 0.0
        for index, (method, path, headers, body) in enumerate(requests):
            plain, cross = [
                await gw.client.request(
                    method,
                    path,
                    content=body,
                    headers={**headers, "X-Request-ID": f"{way}-{index}", **extra},
                )
                for way, extra in (("edge", {}), ("stack", {"Origin": origin}))
            ]
            assert plain.status_code == cross.status_code, path
            assert plain.headers["x-request-id"] == f"edge-{index}"
            assert cross.headers["x-request-id"] == f"stack-{index}"
            assert plain.headers["vary"] == "Origin"
            assert "Origin" in cross.headers["vary"]
            assert "access-control-allow-origin" not in plain.headers
            assert cross.headers["access-control-allow-origin"] == origin
            assert compared(plain) == compared(cross), path
            if plain.status_code >= 400:
                problem, cross_problem = plain.json(), cross.json()
                assert problem.pop("request_id") == f"edge-{index}"
                assert cross_problem.pop("request_id") == f"stack-{index}"
                assert problem == cross_problem
        after = REGISTRY.get_sample_value("taskflow_http_requests_total", ok)
        access_log.writer.flush()
    assert after == counted + 2
    logged = lines.getvalue().splitlines()
    for index in range(len(requests)):
        for way in ("edge", "stack"):
            (line,) = [entry for entry in logged if f"request_id={way}-{index} " in entry]
            assert "path=/api/v1/tasks" in line


def test_a_websocket_route_added_to_the_app_is_reached() -> None:
    """Non-HTTP scopes go through the same composition to the app's routes (the live events
    socket is such a route); proxied prefixes never match them."""
    from api_gateway.main import create_app
    from conftest import gateway_settings
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(
            {"path": websocket.url.path, "got": await websocket.receive_text()}
        )
        await websocket.close()

    app = create_app(gateway_settings())
    app.router.routes.append(WebSocketRoute("/api/v1/echo", echo))
    app.router.routes.append(WebSocketRoute("/api/v1/tasks/ws", echo))  # under a proxied prefix
    with TestClient(app) as client:
        for path in ("/api/v1/echo", "/api/v1/tasks/ws"):
            with client.websocket_connect(path) as socket:
                socket.send_text("hello")
                assert socket.receive_json() == {"path": path, "got": "hello"}


async def test_an_unexpected_error_is_a_problem_with_the_request_id(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    """The kit's error boundary renders the forwarder's failures too (no boundary of its own)."""
    _backend, server = await start_backend()
    async with make_gateway(tasks=[server.url]) as gw:

        async def broken(**_: object) -> None:
            raise RuntimeError("a bug in the gateway")

        gw.gateway.limits.check = broken
        # Both ways: ProxyEdge's boundary (no Origin) and the stack's (cross-origin).
        for headers in ({}, {"Origin": "http://localhost:3000"}):
            response = await gw.client.get("/api/v1/tasks/1", headers=headers)
            assert response.status_code == 500
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["request_id"] == response.headers["x-request-id"]
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "bug" not in response.text


async def test_while_serving_the_start_up_heap_is_frozen_and_young_collections_are_rarer(
    make_gateway: GatewayFactory,
) -> None:
    import gc

    from api_gateway.main import GC_YOUNG_THRESHOLD

    before = gc.get_threshold()
    async with make_gateway():
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    # Undone at shutdown: a process that builds many apps collects them as usual.
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
