"""Failure, for real: a task-service replica killed with SIGKILL under a request stream, a replica
frozen with SIGSTOP, and every replica down (breaker) then back.

The gateway of this suite runs with a 2 s read timeout, a 3 s overall deadline, a breaker that
opens after 3 failures and half-opens after 2 s (see `Suite`). Every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.harness import (
    ALL_SERVICES,
    ServiceProcess,
    Suite,
    User,
    is_problem,
    register_and_login,
    require_services,
    start_and_wait,
    wait_until,
)

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

API = "/api/v1"


@dataclass
class Outcome:
    started: float
    ended: float
    status: int | str  # an HTTP status, or the name of the client-side error

    @property
    def ok(self) -> bool:
        return self.status == 200


def timed_get(client: httpx.Client, path: str, headers: dict[str, str]) -> Outcome:
    started = time.monotonic()
    try:
        status: int | str = client.get(path, headers=headers).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return Outcome(started, time.monotonic(), status)


@pytest.fixture
def owner_task(client: httpx.Client) -> tuple[User, dict[str, Any]]:
    owner = register_and_login(client, "resilient")
    created = client.post(f"{API}/tasks/", json={"title": "survive"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    return owner, created.json()


def test_kill_9_one_replica_under_a_request_stream(
    gateway: ServiceProcess,
    restore_replicas: list[ServiceProcess],
    owner_task: tuple[User, dict[str, Any]],
) -> None:
    owner, task = owner_task
    path = f"{API}/tasks/{task['id']}"
    victim = restore_replicas[1]  # not the one stats-service reads from
    total, workers, kill_after = 200, 4, 60
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    issued = 0
    enough_done = threading.Event()
    kill_window: dict[str, float] = {}

    def stream() -> None:
        nonlocal issued
        with httpx.Client(base_url=gateway.url, timeout=10.0) as http:
            while True:
                with lock:
                    if issued >= total:
                        return
                    issued += 1
                outcome = timed_get(http, path, owner.headers)
                with lock:
                    outcomes.append(outcome)
                    if len(outcomes) >= kill_after:
                        enough_done.set()
                time.sleep(0.01)  # a steady stream, not a flood

    def killer() -> None:
        assert enough_done.wait(30), "the request stream stalled before the kill"
        kill_window["start"] = time.monotonic()
        victim.kill()  # SIGKILL and reap
        kill_window["end"] = time.monotonic()

    threads = [threading.Thread(target=stream) for _ in range(workers)]
    killing = threading.Thread(target=killer)
    killing.start()
    for thread in threads:
        thread.start()
    for thread in [*threads, killing]:
        thread.join(60)
    assert not any(thread.is_alive() for thread in [*threads, killing]), "the stream hung"
    assert "end" in kill_window, "the replica was never killed"
    assert not victim.running

    assert len(outcomes) == total
    failed = [o for o in outcomes if not o.ok]
    print(f"kill -9 under load: {len(failed)} of {total} failed: {[o.status for o in failed]}")
    in_flight = [
        o for o in outcomes if o.started <= kill_window["end"] and o.ended >= kill_window["start"]
    ]
    after = [o for o in outcomes if o.started > kill_window["end"]]
    assert len(after) >= 50, "too few requests after the kill to show anything"
    # The victim really was in rotation: it served part of the stream before it died.
    assert victim.log_text().count(f'"path": "{path}"') > 0, "the victim never served the stream"
    assert [o.status for o in after if not o.ok] == [], "requests failed after the kill"
    assert all(o in in_flight for o in failed), [o.status for o in failed]
    assert len(failed) <= workers, [o.status for o in failed]


def test_sigstop_replica_gives_504_within_the_deadline_and_the_other_keeps_serving(
    gateway: ServiceProcess,
    suite: Suite,
    restore_replicas: list[ServiceProcess],
    owner_task: tuple[User, dict[str, Any]],
) -> None:
    owner, task = owner_task
    path = f"{API}/tasks/{task['id']}"
    frozen, healthy = restore_replicas[1], restore_replicas[0]
    limit = suite.deadline + 1.5  # the deadline, plus slack for two busy cores
    workers = 8
    stream_for = suite.deadline + 1.0  # long enough for the first timeouts to come back
    outcomes: list[tuple[Outcome, httpx.Response | None]] = []
    lock = threading.Lock()

    def attempt(http: httpx.Client) -> tuple[Outcome, httpx.Response | None]:
        started = time.monotonic()
        try:
            response = http.get(path, headers=owner.headers)
        except httpx.HTTPError as exc:
            return Outcome(started, time.monotonic(), type(exc).__name__), None
        return Outcome(started, time.monotonic(), response.status_code), response

    def stream() -> None:
        # Sequential reads while the replica is frozen: concurrent, steady traffic, as users
        # keep clicking; the balancer sends some of it to the frozen replica.
        stop_at = time.monotonic() + stream_for
        with httpx.Client(base_url=gateway.url, timeout=limit + 5) as http:
            while time.monotonic() < stop_at:
                result = attempt(http)
                with lock:
                    outcomes.append(result)
                time.sleep(0.02)

    def check(phase: str, results: list[tuple[Outcome, httpx.Response | None]]) -> list[int | str]:
        statuses = [o.status for o, _ in results]
        summary = (
            f"{phase}: {len(results)} requests, "
            f"{ {status: statuses.count(status) for status in set(statuses)} }, "
            f"slowest {max(o.ended - o.started for o, _ in results):.2f}s"
        )
        print("SIGSTOP", summary)
        unexpected = [(o, r) for o, r in results if o.status not in (200, 504)]
        assert not unexpected, f"{summary}; first: {unexpected[0][0]} {unexpected[0][1]!r} " + (
            unexpected[0][1].text if unexpected[0][1] is not None else ""
        )
        assert all(o.ended - o.started <= limit for o, _ in results), summary
        for outcome, response in results:
            if outcome.status == 504:
                assert response is not None
                is_problem(response, 504)
        return statuses

    # 1. A burst on an idle system, every request at the same instant on a warm connection:
    #    the balancer spreads them over both replicas before any answer comes back.
    burst_size = 10
    clients = [httpx.Client(base_url=gateway.url, timeout=limit + 5) for _ in range(burst_size)]
    try:
        for http in clients:
            assert http.get("/health").status_code == 200
        barrier = threading.Barrier(burst_size)

        def one(http: httpx.Client) -> tuple[Outcome, httpx.Response | None]:
            barrier.wait(10)
            return attempt(http)

        frozen.pause()
        with ThreadPoolExecutor(burst_size) as pool:
            burst = list(pool.map(one, clients))
    finally:
        for http in clients:
            http.close()
    statuses = check("burst", burst)
    assert statuses.count(504) >= 1, "the frozen replica was never tried"
    assert statuses.count(200) >= 1, "the healthy replica served nothing"

    # 2. Steady traffic right after: the healthy replica keeps serving through the gateway.
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(stream) for _ in range(workers)]:
            future.result(timeout=stream_for + limit + 10)
    statuses = check("stream", outcomes)
    assert statuses.count(200) >= len(statuses) // 2, "the healthy replica did not keep serving"

    # The healthy replica answers at once, and the gateway still routes to it.
    assert httpx.get(f"{healthy.url}/health", timeout=1.0).status_code == 200
    with httpx.Client(base_url=gateway.url, timeout=limit + 5) as http:
        after = [http.get(path, headers=owner.headers).status_code for _ in range(6)]
    assert after.count(200) >= 3, after
    assert set(after) <= {200, 504}, after

    frozen.resume()


def test_all_replicas_down_fails_fast_with_503_then_recovers(
    client: httpx.Client,
    restore_replicas: list[ServiceProcess],
    owner_task: tuple[User, dict[str, Any]],
) -> None:
    owner, task = owner_task
    listing = f"{API}/tasks/"
    before = client.get(f"{API}/stats/", headers=owner.headers)
    assert before.status_code == 200, before.text
    assert before.json()["total_tasks"] == 1

    for replica in restore_replicas:
        replica.kill()

    for attempt in range(8):
        started = time.monotonic()
        response = client.get(listing, headers=owner.headers)
        elapsed = time.monotonic() - started
        is_problem(response, 503)
        assert int(response.headers["retry-after"]) >= 1, attempt
        assert elapsed < 1.0, f"attempt {attempt} took {elapsed:.2f}s: not failing fast"

    # The rest of the system is unaffected.
    assert client.get(f"{API}/auth/me", headers=owner.headers).status_code == 200

    # Statistics: once the fresh copy (1 s) has expired, the last known figures marked stale,
    # never zeros (a last known value exists, so not a 503 either).
    answers: list[httpx.Response] = []

    def stats_are_stale() -> bool:
        answers.append(client.get(f"{API}/stats/", headers=owner.headers))
        assert answers[-1].status_code == 200, answers[-1].text  # never a 503: a value is known
        return bool(answers[-1].json()["stale"])

    wait_until(stats_are_stale, timeout=6, what="stats marked stale")
    stale = answers[-1]
    assert stale.headers["warning"].startswith("110"), stale.headers
    assert stale.json()["total_tasks"] == before.json()["total_tasks"] == 1

    task_upstream = client.get("/api/status").json()["upstreams"]["task-service"]
    assert task_upstream["circuit"] in ("open", "half_open"), task_upstream
    assert all(r["state"] != "up" for r in task_upstream["replicas"]), task_upstream

    start_and_wait(restore_replicas)
    recovery = wait_until(
        lambda: client.get(listing, headers=owner.headers).status_code == 200,
        timeout=20,
        interval=0.2,
        what="the gateway to serve tasks after the replicas restarted",
    )
    assert recovery < 20
    for _ in range(5):
        again = client.get(f"{API}/tasks/{task['id']}", headers=owner.headers)
        assert again.status_code == 200, again.text
