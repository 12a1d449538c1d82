"""The gateway's own behaviour at the edges: request ids, error shape, early token rejection,
the body limit, path tricks, merged docs and the status page."""

from __future__ import annotations

import http.server
import json
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.harness import (
    ALL_SERVICES,
    LOOPBACK,
    ServiceProcess,
    Suite,
    User,
    is_problem,
    require_services,
    wait_until,
)

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

API = "/api/v1"
MIB = 1024 * 1024


# ---- request ids and errors ------------------------------------------------------------------


def test_request_id_is_echoed_and_reaches_the_service(
    client: httpx.Client, suite: Suite, user: User
) -> None:
    request_id = f"suite-{uuid.uuid4().hex}"
    response = client.get(f"{API}/tasks/", headers={**user.headers, "X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id
    # The service that answered logged the same id (the gateway forwarded it).
    wait_until(
        lambda: bool(suite.logs_containing(request_id, suite.task_replicas)),
        timeout=5,
        what="the task-service log to mention the forwarded request id",
    )

    generated = client.get(f"{API}/tasks/", headers=user.headers)
    assert generated.headers.get("x-request-id"), "the gateway must return a generated id"
    other = client.get(f"{API}/tasks/", headers=user.headers)
    assert other.headers["x-request-id"] != generated.headers["x-request-id"]

    health = client.get("/health", headers={"X-Request-ID": request_id})
    assert health.status_code == 200
    assert health.headers["x-request-id"] == request_id


def test_errors_are_problem_json(client: httpx.Client, user: User) -> None:
    request_id = f"suite-{uuid.uuid4().hex}"
    missing = client.get(
        f"{API}/tasks/987654321", headers={**user.headers, "X-Request-ID": request_id}
    )
    body = is_problem(missing, 404)
    assert body["request_id"] == request_id

    invalid = client.post(f"{API}/tasks/", json={"title": ""}, headers=user.headers)
    body = is_problem(invalid, 422)
    assert body["errors"], body
    assert all({"loc", "msg", "type"} <= set(error) for error in body["errors"])

    # Validation errors never echo the input back (a password may be in it).
    secret_password = "shrt"  # too short to be accepted
    weak = client.post(
        f"{API}/auth/register",
        json={"email": "a@example.com", "username": "weak-pass-user", "password": secret_password},
    )
    is_problem(weak, 422)
    assert f'"{secret_password}"' not in weak.text

    not_json = client.post(
        f"{API}/tasks/",
        content=b"{not json",
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code in (400, 422), not_json.text
    is_problem(not_json, not_json.status_code)

    unknown_route = client.get(f"{API}/no-such-thing", headers=user.headers)
    is_problem(unknown_route, 404)


def _token(suite: Suite, *, expired: bool = False, secret: str | None = None) -> str:
    from taskflow_kit.tokens import TokenConfig, issue_token

    config = TokenConfig(secret=secret or suite.jwt_secret, issuer="taskflow", audience="taskflow")
    issued = datetime.now(UTC) - (timedelta(hours=2) if expired else timedelta(0))
    return issue_token(
        config,
        subject="1",
        token_type="access",
        ttl=timedelta(minutes=15),
        claims={"username": "nobody", "is_superuser": False},
        now=issued,
    )


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer not-a-jwt",
        "Bearer aaa.bbb.ccc",
        "Basic dXNlcjpwYXNz",
        "expired",
        "forged",
    ],
)
def test_unauthenticated_requests_get_401_with_www_authenticate(
    client: httpx.Client, suite: Suite, authorization: str | None
) -> None:
    if authorization == "expired":
        authorization = f"Bearer {_token(suite, expired=True)}"
    elif authorization == "forged":
        authorization = f"Bearer {_token(suite, secret='x' * 48)}"
    request_id = f"suite-401-{uuid.uuid4().hex}"
    headers = {"X-Request-ID": request_id}
    if authorization:
        headers["Authorization"] = authorization
    for path in (f"{API}/tasks/", f"{API}/auth/me", f"{API}/stats/"):
        response = client.get(path, headers=headers)
        is_problem(response, 401)
        assert response.headers["www-authenticate"].lower().startswith("bearer"), path
    if authorization and authorization.startswith("Bearer "):
        # A present but bad token is refused by the gateway itself, without touching a service.
        time.sleep(0.3)  # lets a wrongly forwarded request reach a log before we look
        services = [p for p in suite.processes if p.package != "api_gateway"]
        assert suite.logs_containing(request_id, services) == []


# ---- body limit ------------------------------------------------------------------------------


def raw_exchange(
    port: int, head: bytes, chunks: Iterable[bytes], *, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send a request (head, then body chunks) on a raw socket and read the response.

    Sending stops as soon as the server answers (or closes), as a gateway that refuses a body
    early does; the answer is still read.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            if time.monotonic() > deadline:
                break
            try:
                part = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not part:
                break
            data += part
    assert data, "the connection closed without any response"
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(body) >= int(value.strip())
    return False


def _chunked(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def _json_body(size: int) -> bytes:
    return json.dumps({"title": "big", "description": "x" * size}).encode()


def _head(method: str, target: str, user: User, request_id: str, extra: str) -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
        f"Authorization: Bearer {user.token}\r\nContent-Type: application/json\r\n"
        f"X-Request-ID: {request_id}\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


def test_a_body_over_the_limit_is_refused_before_any_service(
    gateway: ServiceProcess, suite: Suite, user: User
) -> None:
    # A body under the limit goes through (control: its request id reaches task-service).
    small_id = f"suite-small-{uuid.uuid4().hex}"
    small = _json_body(512 * 1024)
    status, _, _ = raw_exchange(
        gateway.port,
        _head("POST", f"{API}/tasks/", user, small_id, f"Content-Length: {len(small)}\r\n"),
        [small],
    )
    assert status != 413
    wait_until(
        lambda: bool(suite.logs_containing(small_id, suite.task_replicas)),
        timeout=5,
        what="the under-limit request to reach task-service",
    )

    big = _json_body(MIB + 64 * 1024)
    sized_id = f"suite-sized-{uuid.uuid4().hex}"
    status, headers, body = raw_exchange(
        gateway.port,
        _head("POST", f"{API}/tasks/", user, sized_id, f"Content-Length: {len(big)}\r\n"),
        [big[i : i + 64 * 1024] for i in range(0, len(big), 64 * 1024)],
    )
    assert status == 413, body[:300]
    assert headers.get("content-type", "").startswith("application/problem+json"), headers

    chunked_id = f"suite-chunked-{uuid.uuid4().hex}"
    status, headers, body = raw_exchange(
        gateway.port,
        _head("POST", f"{API}/tasks/", user, chunked_id, "Transfer-Encoding: chunked\r\n"),
        _chunked(_json_body(MIB + 256 * 1024)),
    )
    assert status == 413, body[:300]

    # Neither refused request reached a service (their ids are in no service's log).
    time.sleep(0.3)  # lets a wrongly forwarded request show up in a log before we look
    services = [p for p in suite.processes if p.package != "api_gateway"]
    assert suite.logs_containing(sized_id, services) == []
    assert suite.logs_containing(chunked_id, services) == []


# ---- path tricks -----------------------------------------------------------------------------


class Canary:
    """An HTTP server on loopback that records every request it receives."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Length", "6")
                self.end_headers()
                self.wfile.write(b"canary")

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    server = Canary()
    yield server
    server.close()


def test_path_tricks_never_reach_another_host(
    gateway: ServiceProcess, suite: Suite, user: User, canary: Canary
) -> None:
    # Control: the internal route answers this token when called directly, so a trick that
    # reached it through the gateway would show up as a 200.
    internal = httpx.get(
        f"{suite.task_replicas[0].url}/internal/tasks/aggregates", headers=user.headers
    )
    assert internal.status_code == 200, internal.text
    elsewhere = f"{LOOPBACK}:{canary.port}"
    targets = [
        f"{API}/tasks/..%2f..%2finternal",
        f"{API}/tasks/..%2F..%2Finternal%2Ftasks%2Faggregates",
        f"{API}/tasks/%2e%2e/%2e%2e/internal",
        f"{API}/tasks/../../internal",
        f"{API}/tasks/../../../internal/tasks/aggregates",
        f"{API}/../internal/tasks/aggregates",
        f"{API}/tasks/..%2f..%2f..%2finternal%2ftasks%2faggregates",
        f"{API}/tasks/%2e%2e/%2e%2e/%2e%2e/internal/tasks/aggregates",
        f"{API}/tasks%2f..%2f..%2finternal",
        f"{API}%2ftasks",
        f"//evil.com{API}/tasks",
        f"//{elsewhere}{API}/tasks",
        f"///{elsewhere}{API}/tasks",
        f"{API}/tasks@evil.com",
        f"{API}/tasks@{elsewhere}",
        f"{API}/tasks/@{elsewhere}/x",
        f"{API}/tasks/%40{elsewhere}",
        f"{API}/tasks/%2F%2F{elsewhere}",
        f"{API}/tasks/\\\\{elsewhere}",
        f"http://{elsewhere}{API}/tasks",  # absolute-form target, as sent to a forward proxy
        f"{API}/tasks/%00",
        "/internal/tasks/aggregates",
    ]
    problems: list[str] = []
    for target in targets:
        for host_header in (LOOPBACK, elsewhere):
            head = (
                f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\n"
                f"Authorization: Bearer {user.token}\r\nConnection: close\r\n\r\n"
            ).encode()
            try:
                status, headers, body = raw_exchange(gateway.port, head, [])
            except AssertionError as exc:
                problems.append(f"{target} (Host: {host_header}): {exc}")
                continue
            where = f"{target} (Host: {host_header}) -> {status} {body[:200]!r}"
            location = headers.get("location", "")
            if (
                status >= 500
                or body == b"canary"
                or "evil.com" in location
                or elsewhere in location
                or ("internal" in target and status not in (400, 401, 403, 404, 405))
            ):
                problems.append(where)
    assert problems == [], "\n".join(problems)
    assert canary.hits == [], canary.hits


# ---- docs and status -------------------------------------------------------------------------


def test_status_lists_every_upstream_and_replica(client: httpx.Client, suite: Suite) -> None:
    status = client.get("/api/status")
    assert status.status_code == 200, status.text
    report = status.json()
    upstreams = report["upstreams"]
    expected = {
        "user-service": [suite.user],
        "task-service": suite.task_replicas,
        "stats-service": [suite.stats],
    }
    assert set(upstreams) == set(expected)
    for name, processes in expected.items():
        replicas = upstreams[name]["replicas"]
        assert sorted(r["url"] for r in replicas) == sorted(p.url for p in processes if p), name
        assert all(r["state"] == "up" for r in replicas), replicas
        assert all(isinstance(r["latency_ms"], int | float) for r in replicas), replicas
        assert upstreams[name]["circuit"] == "closed", name
    assert report["redis"]["status"] == "up"
    assert report["rate_limiter"]["mode"] == "redis"


def test_merged_openapi_and_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json")
    assert spec.status_code == 200, spec.text[:300]
    paths = spec.json()["paths"]
    normalised = {re.sub(r"\{[^}]*\}", "{}", path).rstrip("/") for path in paths}
    for expected in (
        f"{API}/auth/login",
        f"{API}/auth/register",
        f"{API}/auth/me",
        f"{API}/users/me",
        f"{API}/users/login",
        f"{API}/tasks",
        f"{API}/tasks/{{}}",
        f"{API}/tasks/{{}}/dependencies",
        f"{API}/tasks/{{}}/complete",
        f"{API}/stats",
        f"{API}/stats/activity",
    ):
        assert expected in normalised, f"{expected} not in the merged spec: {sorted(paths)}"
    assert not any(p.startswith("/internal") for p in paths), "internal routes are not public"
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200, page
        assert html.headers["content-type"].startswith("text/html"), page
        assert "openapi.json" in html.text, page


def test_cors_preflight_for_the_frontend(client: httpx.Client) -> None:
    preflight = client.options(
        f"{API}/tasks/1",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code in (200, 204), preflight.text
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "PATCH" in preflight.headers["access-control-allow-methods"].upper()
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed

    foreign = client.options(
        f"{API}/tasks/",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert foreign.headers.get("access-control-allow-origin") not in ("*", "https://evil.example")


def test_health_of_the_gateway(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
