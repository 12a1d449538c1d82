"""Rate limiting is shared by every gateway replica (Redis), and the gateway fails open when
Redis is away.

Two extra gateway processes share one Redis namespace and a low per-user limit; hits spread over
both add up. A third gateway points at a Redis that does not exist and must keep serving.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.harness import (
    ALL_SERVICES,
    ServiceProcess,
    Suite,
    free_port,
    is_problem,
    register_and_login,
    require_services,
    start_and_wait,
    unique,
)

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

PER_USER_LIMIT = 20
LIMITS = {
    "GATEWAY_RATE_LIMIT_PER_USER": str(PER_USER_LIMIT),
    "GATEWAY_RATE_LIMIT_WINDOW_SECONDS": "60",
}


@pytest.fixture(scope="module")
def limited_pair(suite: Suite) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    prefix = f"{suite.redis_prefix}limited:"
    pair = (
        suite.gateway_process("api-gateway-limited-a", redis_prefix=prefix, **LIMITS),
        suite.gateway_process("api-gateway-limited-b", redis_prefix=prefix, **LIMITS),
    )
    try:
        start_and_wait(pair)
        yield pair
    finally:
        for gateway in pair:
            gateway.stop()


def rate_limit_headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("ratelimit")}


def test_per_user_limit_is_shared_by_two_gateways(
    client: httpx.Client, limited_pair: tuple[ServiceProcess, ServiceProcess]
) -> None:
    user = register_and_login(client, "limited")  # logged in through the main gateway
    first, second = limited_pair
    with (
        httpx.Client(base_url=first.url, timeout=10.0) as a,
        httpx.Client(base_url=second.url, timeout=10.0) as b,
    ):
        for hit in range(PER_USER_LIMIT):
            response = (a, b)[hit % 2].get("/api/v1/tasks/", headers=user.headers)
            assert response.status_code == 200, f"hit {hit + 1}: {response.text}"
            assert rate_limit_headers(response), response.headers
        for gateway in (a, b):
            refused = gateway.get("/api/v1/tasks/", headers=user.headers)
            is_problem(refused, 429)
            assert int(refused.headers["retry-after"]) >= 1
            assert int(refused.headers["retry-after"]) <= 60

        # Another user (same address) is not affected.
        other = register_and_login(client, "unlimited")
        for gateway in (a, b):
            assert gateway.get("/api/v1/tasks/", headers=other.headers).status_code == 200


def test_gateway_fails_open_without_redis(suite: Suite) -> None:
    nowhere = f"redis://127.0.0.1:{free_port(suite.ports)}/0"
    gateway = suite.gateway_process("api-gateway-no-redis", **LIMITS)
    gateway.env["REDIS_URL"] = nowhere
    try:
        start_and_wait([gateway])
        with httpx.Client(base_url=gateway.url, timeout=10.0) as http:
            user = register_and_login(http, "noredis")
            for _ in range(5):
                response = http.get("/api/v1/tasks/", headers=user.headers)
                assert response.status_code == 200, response.text
            status = http.get("/api/status")
            assert status.status_code == 200
            report = status.json()
            assert report["redis"]["status"] != "up", report["redis"]
            assert report["rate_limiter"]["mode"] != "redis", report["rate_limiter"]
    finally:
        gateway.stop()


def test_spoofed_forwarded_for_does_not_evade_login_throttling(suite: Suite) -> None:
    """The gateway appends the address it saw to X-Forwarded-For; user-service must count
    failed logins against that one, not against whatever the client wrote first."""
    prefix = f"{suite.redis_prefix}throttle:"
    users = suite.add_process(
        "user-service-throttled",
        "user_service",
        suite.base_env(prefix)
        | {
            "USER_SERVICE_DATABASE_URL": suite.users_db,
            "BCRYPT_ROUNDS": "4",
            "LOGIN_FAILURES_PER_ADDRESS": "5",
        },
    )
    gateway = suite.gateway_process(
        "api-gateway-throttled", redis_prefix=prefix, GATEWAY_USER_SERVICE_URLS=users.url
    )
    try:
        start_and_wait([users])
        start_and_wait([gateway])
        # The client comes from 127.0.0.2: like a remote client, it is not on uvicorn's list of
        # trusted proxies (127.0.0.1 by default), so its own X-Forwarded-For is just a header.
        remote = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=gateway.url, timeout=10.0, transport=remote) as http:
            answers = [
                http.post(
                    "/api/v1/auth/login",
                    json={"username": unique("ghost"), "password": "not the password"},
                    headers={"X-Forwarded-For": f"10.9.{attempt}.1"},
                )
                for attempt in range(8)
            ]
    finally:
        gateway.stop()
        users.stop()
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
    assert int(answers[-1].headers["retry-after"]) >= 1
