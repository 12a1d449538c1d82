"""The compose stack run for real: built, scaled, exercised through the gateway, faults injected.

Run by `make test-compose` (tests/compose/run.sh prepares the container runtime and the base
images). Every step is bounded in time; the stack is torn down (`down -v`) whatever happens and
the script checks that no container, volume or network of its project is left. Prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
TASK_REPLICAS = 3
STATS_REPLICAS = 2
FIGURES: dict[str, Any] = {}


class StackFailure(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StackFailure(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def phase(name: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"--- {name}", flush=True)
    try:
        yield
    finally:
        seconds = round(time.monotonic() - started, 1)
        FIGURES.setdefault("phases_s", {})[name] = seconds
        print(f"    {name}: {seconds} s", flush=True)


@dataclass
class Stack:
    project: str
    port: int
    compose: str
    env: dict[str, str] = field(default_factory=dict)

    def run(
        self, *args: str, timeout: float = 120, check_rc: bool = True, quiet: bool = False
    ) -> subprocess.CompletedProcess[str]:
        command = [self.compose, "-p", self.project, "-f", str(ROOT / "docker-compose.yml"), *args]
        result = subprocess.run(
            command, cwd=ROOT, env=self.env, text=True, capture_output=True, timeout=timeout
        )
        if check_rc and result.returncode != 0:
            tail = (result.stdout + result.stderr)[-4000:]
            raise StackFailure(f"{' '.join(args[:2])} failed ({result.returncode}):\n{tail}")
        if not quiet and result.stderr.strip() and result.returncode != 0:
            print(result.stderr[-2000:], file=sys.stderr)
        return result

    def containers(self, service: str | None = None, *, running_only: bool = True) -> list[str]:
        args = ["ps", "-q"] + ([] if running_only else ["-a"]) + ([service] if service else [])
        return self.run(*args, quiet=True).stdout.split()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["podman", *args], text=True, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as expired:  # storage locked by a build, say: try later
        return subprocess.CompletedProcess(expired.cmd, -1, "", f"timed out after {timeout} s")


class HealthLoop:
    """Without systemd podman never runs a container's health check by itself: run them here,
    every two seconds, for every container of the project, while the stack is up."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        label = f"label=com.docker.compose.project={self.project}"
        while not self.stop.is_set():
            listed = podman("ps", "-q", "--filter", label, timeout=20)
            for container in listed.stdout.split():
                podman("healthcheck", "run", container, timeout=20)
            self.stop.wait(2)

    def __enter__(self) -> HealthLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def wait_until(what: str, predicate: Callable[[], bool], *, seconds: float) -> float:
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise StackFailure(f"timed out after {seconds} s waiting for {what}")


def register_and_login(client: httpx.Client, name: str) -> dict[str, str]:
    password = "correct-horse-battery-staple"
    created = client.post(
        "/api/v1/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": password},
    )
    check(created.status_code == 201, f"register {name}: {created.status_code} {created.text}")
    token = client.post("/api/v1/auth/login", json={"username": name, "password": password})
    check(token.status_code == 200, f"login {name}: {token.status_code} {token.text}")
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def full_flow(stack: Stack) -> tuple[dict[str, str], int]:
    """Register, login, tasks, an assignment, dependencies (cycle, blocked completion), stats."""
    suffix = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        alice = register_and_login(client, f"alice{suffix}")
        bob = register_and_login(client, f"bob{suffix}")
        me = client.get("/api/v1/users/me", headers=bob)
        check(me.status_code == 200, f"users/me answered {me.status_code}: {me.text[:300]}")
        bob_id = me.json()["id"]
        check(client.get("/api/v1/auth/me", headers=alice).status_code == 200, "me")
        first = client.post(
            "/api/v1/tasks/",
            headers=alice,
            json={"title": "write the plan", "priority": "high", "tags": ["ops"]},
        )
        check(first.status_code == 201, f"create: {first.status_code} {first.text}")
        second = client.post(
            "/api/v1/tasks/",
            headers=alice,
            json={"title": "ship it", "assignee_id": bob_id, "depends_on": [first.json()["id"]]},
        )
        check(second.status_code == 201, f"with assignee: {second.status_code} {second.text}")
        first_id, second_id = first.json()["id"], second.json()["id"]
        cycle = client.post(
            f"/api/v1/tasks/{first_id}/dependencies",
            headers=alice,
            json={"depends_on_id": second_id},
        )
        check(cycle.status_code == 409, f"cycle: {cycle.status_code} {cycle.text}")
        blocked = client.patch(f"/api/v1/tasks/{second_id}/complete", headers=alice)
        check(blocked.status_code == 409, f"blocked completion: {blocked.status_code}")
        seen_by_bob = client.get(f"/api/v1/tasks/{second_id}", headers=bob)
        check(seen_by_bob.status_code == 200, f"assignee reads: {seen_by_bob.status_code}")
        done = client.patch(f"/api/v1/tasks/{first_id}/complete", headers=alice)
        check(done.status_code == 200, f"complete: {done.status_code} {done.text}")
        tree = client.get(f"/api/v1/tasks/{second_id}/dependency-tree", headers=alice)
        check(tree.status_code == 200, f"dependency tree: {tree.status_code}")
        stats = client.get("/api/v1/stats/", headers=alice)
        check(stats.status_code == 200, f"stats: {stats.status_code} {stats.text}")
        body = stats.json()
        check(body["total_tasks"] == 2 and body["completed_tasks"] == 1, f"stats: {body}")
        live_update(stack, client, alice)
        status = client.get("/api/status").json()
        FIGURES["api_status"] = status.get("upstreams")
        return alice, second_id


def live_update(stack: Stack, client: httpx.Client, headers: dict[str, str]) -> None:
    """The WebSocket of the events issue: a task created over HTTP is pushed to its owner."""
    from websockets.sync.client import connect

    token = headers["Authorization"].removeprefix("Bearer ")
    url = stack.url.replace("http://", "ws://") + "/api/v1/ws"
    with connect(url, open_timeout=10) as socket_:
        socket_.send(json.dumps({"token": token}))
        ready = json.loads(socket_.recv(timeout=10))
        check(ready.get("type") == "ready", f"live socket: {ready}")
        started = time.monotonic()
        made = client.post("/api/v1/tasks/", headers=headers, json={"title": "pushed live"})
        check(made.status_code == 201, f"create for the socket: {made.status_code}")
        while True:
            message = json.loads(socket_.recv(timeout=10))
            if message.get("type") != "heartbeat":
                break
        check(
            message.get("type") == "task.created"
            and message.get("subject_id") == str(made.json()["id"]),
            f"live event: {message}",
        )
        FIGURES["live_event_after_s"] = round(time.monotonic() - started, 3)


def spread(stack: Stack, headers: dict[str, str], requests: int = 60) -> None:
    """Requests through the gateway land on every task-service replica (counted from each
    replica's own access log by a request id marker)."""
    marker = f"spread-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        for number in range(requests):
            answer = client.get(
                "/api/v1/tasks/", headers={**headers, "X-Request-ID": f"{marker}-{number}"}
            )
            check(answer.status_code == 200, f"list: {answer.status_code}")
    counts: dict[str, int] = {}
    for container in stack.containers("task-service"):
        logs = podman("logs", container)
        counts[container[:12]] = (logs.stdout + logs.stderr).count(f'"request_id": "{marker}-')
    FIGURES["spread_over_task_replicas"] = sorted(counts.values(), reverse=True)
    print(f"    {requests} requests per replica: {counts}", flush=True)
    check(len(counts) == TASK_REPLICAS, f"expected {TASK_REPLICAS} task replicas, got {counts}")
    check(all(count > 0 for count in counts.values()), f"a replica got no request: {counts}")
    check(sum(counts.values()) == requests, f"requests lost or doubled: {counts}")


@dataclass
class Outcome:
    at: float
    ok: bool
    detail: str


def steady_stream(
    stack: Stack, headers: dict[str, str], task_id: int, stop: threading.Event, out: list[Outcome]
) -> None:
    """One client at about 25 requests/s: reads and writes of a task, until `stop`."""
    with httpx.Client(base_url=stack.url, timeout=20) as client:
        number = 0
        while not stop.is_set():
            number += 1
            try:
                if number % 5 == 0:
                    answer = client.post(
                        "/api/v1/tasks/", headers=headers, json={"title": f"stream {number}"}
                    )
                else:
                    answer = client.get(f"/api/v1/tasks/{task_id}", headers=headers)
                ok = answer.status_code < 400
                out.append(Outcome(time.monotonic(), ok, f"{answer.status_code}"))
            except httpx.HTTPError as error:
                out.append(Outcome(time.monotonic(), False, type(error).__name__))
            stop.wait(0.04)


def kill_a_task_replica(stack: Stack, headers: dict[str, str], task_id: int) -> None:
    clients = 4
    outcomes: list[list[Outcome]] = [[] for _ in range(clients)]
    stop = threading.Event()
    workers = [
        threading.Thread(target=steady_stream, args=(stack, headers, task_id, stop, out))
        for out in outcomes
    ]
    for worker in workers:
        worker.start()
    try:
        time.sleep(3)  # the stream runs against three healthy replicas first
        victim = stack.containers("task-service")[0]
        # A crash, not a stop: SIGKILL to the container's main process from the host (the
        # restart policy ignores `kill`/`stop`, which count as stopping it on purpose).
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", victim).stdout.strip())
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        time.sleep(12)  # and then on, while the gateway notices and the replica is restarted
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    everything = [outcome for out in outcomes for outcome in out]
    failed = [outcome for outcome in everything if not outcome.ok]
    settled = killed_at + 2  # beyond the requests in flight and the gateway's next probe
    late = [outcome for outcome in failed if outcome.at > settled]
    FIGURES["kill_stream"] = {
        "requests": len(everything),
        "failed": len(failed),
        "failed_after_2s": len(late),
        "failures": Counter(outcome.detail for outcome in failed),
    }
    print(f"    stream during kill: {FIGURES['kill_stream']}", flush=True)
    check(len(everything) > 100, "the stream sent too few requests to judge")
    check(len(failed) <= clients, f"more failures than requests in flight: {failed}")
    check(not late, f"failures after the kill settled: {late}")

    def restarted() -> bool:
        state = podman("inspect", "--format", "{{.State.Pid}} {{.RestartCount}}", victim).stdout
        new_pid, restarts = (int(value) for value in state.split())
        return new_pid not in (0, pid) and restarts > 0

    back = wait_until("the killed replica to be restarted", restarted, seconds=60)
    FIGURES["killed_replica_restarted_after_s"] = round(back, 1)


def restart_database(stack: Stack, headers: dict[str, str]) -> None:
    started = time.monotonic()
    stack.run("restart", "tasks-db", timeout=120)
    restarted = time.monotonic() - started
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        recovered = wait_until(
            "task-service to serve again after its database restarted",
            lambda: client.get("/api/v1/tasks/", headers=headers).status_code == 200,
            seconds=60,
        )
        created = client.post("/api/v1/tasks/", headers=headers, json={"title": "after restart"})
        check(created.status_code == 201, f"write after restart: {created.status_code}")
    FIGURES["tasks_db_restart"] = {
        "restart_s": round(restarted, 1),
        "serving_again_after_s": round(recovered, 1),
    }


def leftovers(project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    found = []
    for kind in ("container", "volume", "network"):
        every = ["-a"] if kind == "container" else []
        listed = podman(kind, "ls", "-q", *every, "--filter", label)
        found += [f"{kind} {name}" for name in listed.stdout.split()]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compose", default=os.environ.get("COMPOSE", "docker-compose"))
    parser.add_argument("--up-timeout", type=int, default=600)
    args = parser.parse_args()
    # Stopped from outside (the run's time bound): unwind, so that `down -v` still runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    project = f"taskflow-test-{uuid.uuid4().hex[:6]}"
    stack = Stack(project=project, port=free_port(), compose=args.compose)
    # The compose file has no default secrets (it refuses to start without them): this run's own,
    # one for every variable the file requires (`${NAME:?...}`).
    required = re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text())
    own_secrets = {name: secrets.token_urlsafe(48) for name in dict.fromkeys(required)}
    stack.env = {
        **own_secrets,
        **os.environ,
        "GATEWAY_PORT": str(stack.port),
        "TASKFLOW_TAG": "compose-test",
    }
    started = time.monotonic()
    print(f"project {project}, gateway on {stack.url}", flush=True)
    failure: BaseException | None = None
    try:
        with phase("build"):
            stack.run("build", timeout=900)
        with HealthLoop(project):
            with phase("up --wait"):
                stack.run(
                    "up", "--detach", "--wait", "--wait-timeout", str(args.up_timeout),
                    "--scale", f"task-service={TASK_REPLICAS}",
                    "--scale", f"stats-service={STATS_REPLICAS}",
                    timeout=args.up_timeout + 60,
                )  # fmt: skip
                FIGURES["containers"] = len(stack.containers())
                check(FIGURES["containers"] == 5 + TASK_REPLICAS + STATS_REPLICAS, "containers")
            with phase("full flow"):
                headers, task_id = full_flow(stack)
            with phase("spread"):
                spread(stack, headers)
            with phase("kill a task replica"):
                kill_a_task_replica(stack, headers, task_id)
            with phase("restart tasks-db"):
                restart_database(stack, headers)
    except (StackFailure, subprocess.TimeoutExpired, httpx.HTTPError, LookupError) as error:
        failure = error
        logs = stack.run("logs", "--no-color", "--tail", "40", timeout=60, check_rc=False)
        print(logs.stdout[-12000:], file=sys.stderr)
    finally:
        with phase("down -v"):
            stack.run("down", "-v", "--remove-orphans", "-t", "10", timeout=180, check_rc=False)
        left = leftovers(project)
        FIGURES["total_s"] = round(time.monotonic() - started, 1)
        print("figures: " + json.dumps(FIGURES, default=dict), flush=True)
    if left:
        print(f"FAILED: left behind: {left}", file=sys.stderr)
        return 1
    if failure is not None:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print("compose stack test: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
