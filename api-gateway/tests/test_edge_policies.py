"""What the gateway decides on its own: early token rejection, rate limits, CORS."""

from __future__ import annotations

from datetime import timedelta

import jwt
from conftest import JWT_SECRET, BackendStarter, GatewayFactory, access_token
from gateway_doubles import free_port
from taskflow_kit.tokens import TokenConfig, issue_token


async def test_bad_bearer_tokens_are_401_without_touching_a_service(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    forged = issue_token(
        TokenConfig(
            secret="another-secret-0123456789abcdef-0123", issuer="taskflow", audience="taskflow"
        ),
        subject="1",
        token_type="access",
        ttl=timedelta(minutes=5),
    )
    refresh = issue_token(
        TokenConfig(secret=JWT_SECRET, issuer="taskflow", audience="taskflow"),
        subject="1",
        token_type="refresh",
        ttl=timedelta(minutes=5),
    )
    unsigned = jwt.encode({"sub": "1", "type": "access"}, key="", algorithm="none")
    async with make_gateway(tasks=[server.url]) as gw:
        for token in [
            "not-a-jwt",
            forged,
            refresh,
            unsigned,
            access_token(ttl=timedelta(seconds=-5)),
        ]:
            response = await gw.client.get(
                "/api/v1/tasks", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401, token
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == "application/problem+json"
        assert backend.hits == 0

        # Valid, absent, or a non-bearer scheme: the service decides.
        for headers in [
            {"Authorization": f"Bearer {access_token(7)}"},
            {},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ]:
            response = await gw.client.get("/api/v1/tasks", headers=headers)
            assert response.status_code == 200
        assert backend.hits == 3


async def test_per_ip_limit_headers_and_429(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    async with make_gateway(tasks=[server.url], rate_limit_per_ip=3) as gw:
        remaining = []
        for _ in range(3):
            response = await gw.client.get("/api/v1/tasks")
            assert response.status_code == 200
            assert response.headers["ratelimit-limit"] == "3"
            assert 0 < int(response.headers["ratelimit-reset"]) <= 60
            remaining.append(int(response.headers["ratelimit-remaining"]))
        assert remaining == [2, 1, 0]
        response = await gw.client.get("/api/v1/tasks")
        assert response.status_code == 429
        assert response.headers["content-type"] == "application/problem+json"
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.headers["ratelimit-remaining"] == "0"
        assert backend.hits == 3
        # The gateway's own endpoints are not limited.
        assert (await gw.client.get("/health")).status_code == 200
        status = (await gw.client.get("/api/status")).json()
        assert status["rate_limiter"]["mode"] == "redis"


async def test_per_user_limit_counts_the_token_subject(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _backend, server = await start_backend()
    async with make_gateway(tasks=[server.url], rate_limit_per_user=2) as gw:
        alice = {"Authorization": f"Bearer {access_token(1)}"}
        bob = {"Authorization": f"Bearer {access_token(2)}"}
        assert (await gw.client.get("/api/v1/tasks", headers=alice)).status_code == 200
        assert (await gw.client.get("/api/v1/tasks", headers=alice)).status_code == 200
        refused = await gw.client.get("/api/v1/tasks", headers=alice)
        assert refused.status_code == 429
        assert refused.headers["ratelimit-limit"] == "2"
        # Another user from the same address, and anonymous calls, still pass.
        assert (await gw.client.get("/api/v1/tasks", headers=bob)).status_code == 200
        assert (await gw.client.get("/api/v1/tasks")).status_code == 200


async def test_the_limit_is_shared_by_gateway_replicas(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _backend, server = await start_backend()
    async with make_gateway(tasks=[server.url], rate_limit_per_ip=4) as first:
        prefix = first.gateway.settings.redis_prefix
        async with make_gateway(
            tasks=[server.url], rate_limit_per_ip=4, redis_prefix=prefix
        ) as second:
            statuses = []
            for _ in range(3):
                statuses.append((await first.client.get("/api/v1/tasks")).status_code)
                statuses.append((await second.client.get("/api/v1/tasks")).status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_redis_down_fails_open_with_a_local_limit(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _backend, server = await start_backend()
    closed = f"redis://127.0.0.1:{free_port()}/0"
    async with make_gateway(tasks=[server.url], redis_url=closed, rate_limit_per_ip=5) as gw:
        statuses = [(await gw.client.get("/api/v1/tasks")).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]  # still limited, in this process
        status = (await gw.client.get("/api/status")).json()
        assert status["rate_limiter"]["mode"] == "local-fallback"
        assert status["redis"]["status"] == "down"
        assert (await gw.client.get("/ready")).status_code == 503


async def test_rate_limits_can_be_disabled(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    _backend, server = await start_backend()
    async with make_gateway(
        tasks=[server.url], rate_limit_per_ip=1, rate_limit_enabled=False
    ) as gw:
        for _ in range(3):
            response = await gw.client.get("/api/v1/tasks")
            assert response.status_code == 200
            assert "ratelimit-limit" not in response.headers
        status = (await gw.client.get("/api/status")).json()
        assert status["rate_limiter"]["mode"] == "disabled"


async def test_cors_preflight_is_answered_by_the_gateway(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    async with make_gateway(tasks=[server.url]) as gw:
        response = await gw.client.options(
            "/api/v1/tasks/1",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization, content-type, if-match",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
        allowed_methods = response.headers["access-control-allow-methods"]
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            assert method in allowed_methods
        allowed_headers = response.headers["access-control-allow-headers"].lower()
        for name in (
            "authorization",
            "content-type",
            "idempotency-key",
            "if-match",
            "x-request-id",
        ):
            assert name in allowed_headers
        assert backend.hits == 0

        refused = await gw.client.options(
            "/api/v1/tasks",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in refused.headers

        # Without an Origin: no CORS headers, but caches learn that the answer varies by it.
        plain = await gw.client.get("/api/v1/tasks")
        assert plain.status_code == 200
        assert plain.headers["vary"] == "Origin"
        assert "access-control-allow-origin" not in plain.headers
        assert (await gw.client.get("/nowhere")).headers["vary"] == "Origin"

        simple = await gw.client.get("/api/v1/tasks", headers={"Origin": "http://localhost:3000"})
        assert simple.headers["access-control-allow-origin"] == "http://localhost:3000"
        exposed = simple.headers["access-control-expose-headers"].lower()
        for name in ("etag", "location", "x-request-id", "ratelimit-remaining", "retry-after"):
            assert name in exposed


def test_vary_is_merged_not_duplicated() -> None:
    """One pass adds `Origin` to the answer's Vary (merged, as Starlette's CORS middleware does)
    and puts the security headers in place of the answer's own."""
    from api_gateway.security_headers import EdgeHeaders
    from starlette.responses import PlainTextResponse

    edge = EdgeHeaders(PlainTextResponse("x"), allow_origins=["*"])
    nosniff = (b"x-content-type-options", b"nosniff")
    assert edge.headers([(b"etag", b"x")], vary=True) == [
        (b"etag", b"x"),
        (b"vary", b"Origin"),
        nosniff,
    ]
    answer = [
        (b"Vary", b"Accept"),
        (b"etag", b"x"),
        (b"vary", b"Cookie"),
        (b"X-Content-Type-Options", b"sniff"),
    ]
    assert edge.headers(answer, vary=True) == [
        (b"etag", b"x"),
        (b"vary", b"Accept, Cookie, Origin"),
        nosniff,
    ]
    assert edge.headers([(b"vary", b"Accept")], vary=False) == [(b"vary", b"Accept"), nosniff]


def test_one_bearer_parser_and_one_cache_of_verified_tokens() -> None:
    """Issue 18: the status page's monitoring-token check and the token gate read the header
    the same way, and a token's verification is remembered once, by the kit's verifier."""
    from api_gateway.tokens import TokenGate, bearer_credentials

    assert bearer_credentials(b"Bearer abc") == "abc"
    assert bearer_credentials("bEaReR   abc  ") == "abc"
    assert bearer_credentials("Basic abc") is None
    assert bearer_credentials(None) is None

    config = TokenConfig(secret=JWT_SECRET, issuer="taskflow", audience="taskflow")
    gate = TokenGate(config)
    token = access_token(7)
    first = gate.principal(f"Bearer {token}".encode())
    assert first is not None
    assert first.id == 7
    # The gate keeps no cache of its own: what it verified is the verifier's cached principal.
    assert set(vars(gate)) == {"config", "verifier"}
    assert gate.verifier.principal(token) is first
