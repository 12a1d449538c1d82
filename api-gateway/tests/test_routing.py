"""Routing by prefix and path safety: whatever the path, the upstream host never changes."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from api_gateway.paths import UnsafePathError, check_raw_path, request_target
from api_gateway.routing import upstream_for
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

BASE = "http://10.1.2.3:8002"

NASTY = st.sampled_from(
    [
        "/",
        "//",
        "..",
        ".",
        "%2e",
        "%2E%2e",
        "%2f",
        "%2F",
        "%5c",
        "\\",
        "@",
        ":",
        "?",
        "#",
        "evil.example",
        "http:",
        "%40",
        "%3a",
        "%00",
        "%",
        "%%",
        " ",
        "\t",
        "~",
        "[",
        "]",
        "api",
        "v1",
        "tasks",
        "internal",
        ";",
        "=",
        "&",
        "é",
        "%ff",
        "\x7f",
    ]
)
RAW_PATHS = st.lists(NASTY, max_size=12).map(lambda parts: "".join(parts))


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/api/v1/auth/login", "user-service"),
        ("/api/v1/users", "user-service"),
        ("/api/v1/users/", "user-service"),
        ("/api/v1/tasks", "task-service"),
        ("/api/v1/tasks/", "task-service"),
        ("/api/v1/tasks/1/dependency-tree", "task-service"),
        ("/api/v1/stats", "stats-service"),
        ("/api/v1/stats/activity", "stats-service"),
        ("/api/v1/taskss", None),
        ("/api/v1", None),
        ("/internal/tasks/aggregates", None),
        ("/api/v1/internal", None),
        ("/health", None),
        ("/API/V1/TASKS", None),
    ],
)
def test_prefix_routing(path: str, upstream: str | None) -> None:
    assert upstream_for(path) == upstream


@given(RAW_PATHS, st.binary(max_size=20))
def test_the_upstream_host_never_changes(raw: str, query: bytes) -> None:
    raw_path = ("/api/v1/tasks/" + raw).encode("utf-8")
    try:
        path = check_raw_path(raw_path)
    except UnsafePathError:
        return
    url = BASE + request_target(path, query)
    # Two independent URL parsers agree on where this goes...
    assert urlsplit(url).netloc == "10.1.2.3:8002"
    parsed = httpx.URL(url)
    assert (parsed.scheme, parsed.host, parsed.port) == ("http", "10.1.2.3", 8002)
    # ...and the upstream client sends the target exactly as accepted (no re-quoting), to the
    # configured host: the URL it is given is built as the client builds it.
    target = request_target(path, query)
    assert target.startswith(path)
    sent = URL(BASE + target, encoded=True)
    assert (sent.host, sent.port) == ("10.1.2.3", 8002)
    assert sent.raw_path_qs == target
    assert not any(byte <= 0x20 for byte in target.encode())  # no space, CR or LF


@given(RAW_PATHS)
def test_accepted_paths_have_no_dot_segments_or_encoded_slashes(raw: str) -> None:
    raw_path = ("/" + raw).encode("utf-8")
    try:
        path = check_raw_path(raw_path)
    except UnsafePathError:
        return
    lowered = path.lower()
    assert not path.startswith("//")
    assert "%2f" not in lowered
    assert "%5c" not in lowered
    assert "\\" not in path
    assert all(
        segment.lower() not in {".", "..", "%2e", "%2e%2e", ".%2e", "%2e."}
        for segment in path.split("/")
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"api/v1/tasks",
        b"//evil.example/api/v1/tasks",
        b"/api/v1/tasks/../users",
        b"/api/v1/tasks/%2e%2e/users",
        b"/api/v1/tasks/.%2E/users",
        b"/api/v1/tasks/./1",
        b"/api/v1/tasks%2f..%2fusers",
        b"/api/v1/tasks/a%5Cb",
        b"/api/v1/tasks/a\\b",
        b"/api/v1/tasks/%00",
        b"/api/v1/tasks/\xc3\xa9",
        b"/api/v1/tasks/a b",
    ],
)
def test_unsafe_raw_paths_are_refused(raw: bytes) -> None:
    with pytest.raises(UnsafePathError):
        check_raw_path(raw)


def test_query_bytes_are_percent_encoded_not_reinterpreted() -> None:
    assert request_target("/api/v1/tasks", "q=é #x".encode()) == "/api/v1/tasks?q=%C3%A9%20%23x"
    assert request_target("/api/v1/tasks", b"a=1&b=%20") == "/api/v1/tasks?a=1&b=%20"
