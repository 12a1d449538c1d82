"""The cluster trusts only what it must (deploy/k8s, docs/security.md): default-deny
NetworkPolicies with named allowances, and Redis ACL users that may write only their own keys
and XADD only to their own stream, checked against a real Redis started with the ACL file."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from taskflow_kit.events import epoch_key

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("api-gateway", "user-service", "task-service", "stats-service")


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def policies() -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc["spec"]
        for doc in documents()
        if doc["kind"] == "NetworkPolicy"
    }


def selected_name(spec: dict[str, Any]) -> str | None:
    labels = spec["podSelector"].get("matchLabels", {})
    return labels.get("app.kubernetes.io/name")


def peers(rules: list[dict[str, Any]], direction: str) -> set[str]:
    names = set()
    for rule in rules:
        for peer in rule.get(direction, []):
            name = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            if name:
                names.add(name)
    return names


def test_everything_is_denied_unless_allowed() -> None:
    specs = policies()
    deny = specs["default-deny"]
    assert deny["podSelector"] == {}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny
    assert "egress" not in deny
    workloads = {
        doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        for doc in documents()
        if doc["kind"] in ("Deployment", "StatefulSet")
    }
    allowed = {selected_name(spec) for spec in specs.values()}
    assert workloads <= allowed, workloads - allowed  # each workload has its own allowances


def test_each_database_is_reachable_only_from_its_service() -> None:
    specs = policies()
    assert peers(specs["users-db"]["ingress"], "from") == {"user-service"}
    assert peers(specs["tasks-db"]["ingress"], "from") == {"task-service"}
    assert specs["users-db"]["egress"] == specs["tasks-db"]["egress"] == []
    assert peers(specs["redis"]["ingress"], "from") == set(SERVICES)
    # Only the gateway accepts traffic from outside the namespace's services.
    assert peers(specs["stats-service"]["ingress"], "from") == {"api-gateway"}
    assert peers(specs["user-service"]["ingress"], "from") == {"api-gateway", "task-service"}
    assert peers(specs["task-service"]["egress"], "to") == {"tasks-db", "redis", "user-service"}
    assert "users-db" not in peers(specs["task-service"]["egress"], "to")


# ---- Redis ACL ------------------------------------------------------------------------------

PREFIX = "taskflow:"


def acl_file() -> str:
    for doc in documents():
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == "taskflow-redis":
            return str(doc["stringData"]["users.acl"])
    raise AssertionError("no taskflow-redis Secret with users.acl")


def redis_7_server() -> str | None:
    """A redis-server binary of version 7 or later (ACL selectors and read-only key patterns
    are Redis 7's; the embedded development Redis may be older)."""
    candidates = [
        shutil.which("redis-server"),
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
    ]
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        version = subprocess.run(
            [candidate, "--version"], capture_output=True, text=True, check=False
        ).stdout
        major = version.split("v=", 1)[-1].split(".", 1)[0]
        if major.isdigit() and int(major) >= 7:
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


COMPOSE_REDIS = ROOT / "deploy" / "compose" / "redis"
COMPOSE_PASSWORDS = (
    "USER_SERVICE_REDIS_PASSWORD",
    "TASK_SERVICE_REDIS_PASSWORD",
    "STATS_SERVICE_REDIS_PASSWORD",
    "GATEWAY_REDIS_PASSWORD",
)


def compose_acl_file(folder: Path) -> str:
    """The ACL file docker-compose.yml's Redis starts with: its start script run for real (the
    image's entrypoint stubbed out), every password `test-password`."""
    (folder / "docker-entrypoint.sh").write_text("#!/bin/sh\nexit 0\n")
    (folder / "docker-entrypoint.sh").chmod(0o755)
    env = {
        "PATH": f"{folder}:/usr/bin:/bin",
        "TASKFLOW_ACL_FILE": str(folder / "compose.acl"),
        "TASKFLOW_ACL_TEMPLATE": str(COMPOSE_REDIS / "users.acl.in"),
        **dict.fromkeys(COMPOSE_PASSWORDS, "test-password"),
    }
    subprocess.run(["sh", str(COMPOSE_REDIS / "start.sh")], env=env, check=True)
    return (folder / "compose.acl").read_text()


@pytest.fixture(scope="module", params=["k8s", "compose"])
def acl_redis(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """A throwaway Redis (never the shared one) running the manifests' ACL file, or the one
    docker-compose.yml renders from its template: every ACL test runs against both."""
    server = redis_7_server()
    if server is None:
        pytest.skip("no redis-server 7 binary")
    folder = tmp_path_factory.mktemp("redis-acl")
    if request.param == "compose":
        rendered = compose_acl_file(folder)
    else:
        rendered = acl_file().replace(">replace-me", ">test-password")
    (folder / "users.acl").write_text(rendered)
    port = free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--aclfile",
            str(folder / "users.acl"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert process.poll() is None, "redis-server refused the ACL file"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def as_user(port: int, user: str | None) -> redis.Redis:
    if user is None:
        return redis.Redis(port=port, decode_responses=True)
    return redis.Redis(port=port, username=user, password="test-password", decode_responses=True)


def refused(call: Any) -> bool:
    try:
        call()
    except (redis.exceptions.NoPermissionError, redis.exceptions.AuthenticationError):
        return True
    except redis.exceptions.ResponseError as error:
        return "NOPERM" in str(error) or "NOAUTH" in str(error)
    return False


def test_the_default_user_is_off(acl_redis: int) -> None:
    assert refused(lambda: as_user(acl_redis, None).get(f"{PREFIX}revocation:users"))


def test_each_service_adds_events_only_to_its_own_stream(acl_redis: int) -> None:
    users = as_user(acl_redis, "user-service")
    tasks = as_user(acl_redis, "task-service")
    stats = as_user(acl_redis, "stats-service")
    gateway = as_user(acl_redis, "api-gateway")
    user_stream, task_stream = f"{PREFIX}events:user", f"{PREFIX}events:task"

    assert users.xadd(user_stream, {"type": "user.registered"})
    assert tasks.xadd(task_stream, {"type": "task.created"})
    # A forged user.deleted (task-service would delete that user's tasks) is refused.
    for client in (tasks, stats, gateway):
        assert refused(lambda client=client: client.xadd(user_stream, {"type": "user.deleted"}))
    for client in (users, stats, gateway):
        assert refused(lambda client=client: client.xadd(task_stream, {"type": "task.deleted"}))


def test_consumers_read_and_acknowledge_but_cannot_trim_others_streams(acl_redis: int) -> None:
    tasks = as_user(acl_redis, "task-service")
    stats = as_user(acl_redis, "stats-service")
    user_stream, task_stream = f"{PREFIX}events:user", f"{PREFIX}events:task"
    as_user(acl_redis, "user-service").xadd(user_stream, {"type": "user.updated"})
    tasks.xadd(task_stream, {"type": "task.updated"})

    for client, stream, group in (
        (tasks, user_stream, "task-service"),
        (stats, task_stream, "stats-service"),
    ):
        client.xgroup_create(stream, group, id="0", mkstream=False)
        read = client.xreadgroup(group, "c1", {stream: ">"}, count=10)
        ids = [message_id for _, messages in read for message_id, _ in messages]
        assert ids
        assert client.xack(stream, group, *ids) == len(ids)
        assert client.xadd(f"{PREFIX}events:dead:{group}", {"reason": "test"})
        assert refused(lambda client=client, stream=stream: client.xtrim(stream, maxlen=0))
        assert refused(lambda client=client, stream=stream: client.delete(stream))


def test_only_user_service_writes_the_revocation_map(acl_redis: int) -> None:
    users = as_user(acl_redis, "user-service")
    key = f"{PREFIX}revocation:users"
    users.hset(key, "42", "1700000000.0")

    for name in ("task-service", "stats-service", "api-gateway"):
        client = as_user(acl_redis, name)
        assert client.hget(key, "42") == "1700000000.0"  # everyone reads it
        assert refused(lambda client=client: client.hdel(key, "42"))
        assert refused(lambda client=client: client.delete(key))
    assert users.hdel(key, "42") == 1


def test_each_producer_writes_its_own_epoch_key_and_everyone_reads_it(acl_redis: int) -> None:
    """The relay re-sends its backlog when its epoch key is missing and every token check waits
    for user-service's (issue 20): a producer refused its key leaves every service answering 503
    "Access checks are starting up" (found by `make test-compose`)."""
    producers = ("user-service", "task-service")
    for producer in producers:
        key = epoch_key(PREFIX, producer)
        own = as_user(acl_redis, producer)
        # The relay marks a re-send in progress beside the key, then swaps the two.
        assert own.set(f"{key}:resending", "1")
        assert own.set(key, "epoch-1")
        assert own.delete(f"{key}:resending") == 1
        for name in ("user-service", "task-service", "stats-service", "api-gateway"):
            client = as_user(acl_redis, name)
            assert client.get(key) == "epoch-1"
            if name != producer:
                assert refused(lambda client=client, key=key: client.set(key, "forged"))


def test_each_service_writes_its_own_keys_and_scripts_run(acl_redis: int) -> None:
    script = "redis.call('TIME'); return redis.call('INCRBY', KEYS[1], 1)"
    own = {
        "user-service": f"{PREFIX}user-service:rl:login:x",
        "api-gateway": f"{PREFIX}gateway:rl:ip:x",
        "stats-service": f"{PREFIX}stats:v1:fresh:x",
        "task-service": f"{PREFIX}task-service:x",
    }
    for name, key in own.items():
        client = as_user(acl_redis, name)
        assert client.eval(script, 1, key) == 1
        assert client.ping()
        others = [other for other_name, other in own.items() if other_name != name]
        assert refused(lambda client=client, other=others[0]: client.set(other, "1"))
    assert refused(lambda: as_user(acl_redis, "api-gateway").flushall())
    assert refused(lambda: as_user(acl_redis, "user-service").config_get("*"))
