"""Races through the gateway against the real services: exactly the allowed outcome each."""

from __future__ import annotations

import concurrent.futures
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.harness import (
    ALL_SERVICES,
    ServiceProcess,
    User,
    register_and_login,
    require_services,
    unique,
)
from tests.reliability import figures

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

PARALLEL = 16


Call = tuple[str, str, dict[str, Any]]  # method, path, keyword arguments of the request


def race(gateway: ServiceProcess, calls: list[Call]) -> list[httpx.Response]:
    """Send the requests at once, each on its own connection, and count them."""

    def run(call: Call) -> httpx.Response:
        method, path, kwargs = call
        with httpx.Client(base_url=gateway.url, timeout=20.0) as http:
            response = http.request(method, path, **kwargs)
        figures.record("concurrency", response)
        return response

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


def test_duplicate_registrations_give_one_201(gateway: ServiceProcess) -> None:
    name = unique("dup")
    body = {"email": f"{name}@example.com", "username": name, "password": "pw-long-enough-1"}
    responses = race(gateway, [("POST", "/api/v1/auth/register", {"json": body})] * PARALLEL)
    assert statuses(responses) == Counter({201: 1, 409: PARALLEL - 1})


def test_racing_if_match_updates_give_one_success(
    client: httpx.Client, gateway: ServiceProcess, user: User
) -> None:
    task = client.post("/api/v1/tasks/", json={"title": "contended"}, headers=user.headers).json()
    headers = {**user.headers, "If-Match": 'W/"1"'}
    responses = race(
        gateway,
        [
            (
                "PATCH",
                f"/api/v1/tasks/{task['id']}",
                {"json": {"title": f"v{n}"}, "headers": headers},
            )
            for n in range(PARALLEL)
        ],
    )
    assert statuses(responses) == Counter({200: 1, 412: PARALLEL - 1})
    final = client.get(f"/api/v1/tasks/{task['id']}", headers=user.headers).json()
    assert final["version"] == 2


def test_racing_cycle_closing_edges_never_both_succeed(
    client: httpx.Client, gateway: ServiceProcess, user: User
) -> None:
    outcomes: Counter[int] = Counter()
    for _ in range(4):
        ids = [
            client.post("/api/v1/tasks/", json={"title": f"n{n}"}, headers=user.headers).json()[
                "id"
            ]
            for n in range(3)
        ]
        ring = [(ids[0], ids[1]), (ids[1], ids[2]), (ids[2], ids[0])]
        responses = race(
            gateway,
            [
                (
                    "POST",
                    f"/api/v1/tasks/{a}/dependencies",
                    {"json": {"depends_on_id": b}, "headers": user.headers},
                )
                for a, b in ring
            ],
        )
        counted = statuses(responses)
        outcomes.update(counted)
        # A ring of three: at most two edges can stand, so at least one 409; no 5xx.
        assert counted[409] >= 1, counted
        assert counted[201] + counted[409] == 3, counted
        edges = [
            (task_id, target)
            for task_id in ids
            for target in client.get(f"/api/v1/tasks/{task_id}", headers=user.headers).json()[
                "depends_on"
            ]
        ]
        assert len(edges) == counted[201] < 3
    figures.count("concurrency", "cycle_races", 4)


def test_duplicate_idempotency_key_posts_create_one_task(
    client: httpx.Client, gateway: ServiceProcess, user: User
) -> None:
    key = unique("idem")
    title = unique("once")
    headers = {**user.headers, "Idempotency-Key": key}
    responses = race(
        gateway,
        [("POST", "/api/v1/tasks/", {"json": {"title": title}, "headers": headers})] * PARALLEL,
    )
    assert statuses(responses) == Counter({201: PARALLEL})
    assert len({response.json()["id"] for response in responses}) == 1
    listed = client.get("/api/v1/tasks/", params={"search": title}, headers=user.headers).json()
    assert listed["total"] == 1


def test_parallel_wrong_passwords_pass_the_limit_only_five_times(
    client: httpx.Client, gateway: ServiceProcess
) -> None:
    victim = register_and_login(client, "guessed")
    responses = race(
        gateway,
        [
            (
                "POST",
                "/api/v1/auth/login",
                {"json": {"username": victim.username, "password": f"guess-{n}"}},
            )
            for n in range(PARALLEL)
        ],
    )
    assert statuses(responses) == Counter({401: 5, 429: PARALLEL - 5})


@pytest.fixture(scope="module", autouse=True)
def _write_figures() -> Any:
    yield
    figures.write()
