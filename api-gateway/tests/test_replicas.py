"""Replica sets: DNS expansion, choice of the next replica, passive and active health."""

from __future__ import annotations

import pytest
from api_gateway.replicas import Replica, ReplicaSet, ReplicaState


def fake_resolver(table: dict[str, list[str] | Exception]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        answer = table[host]
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    return resolve


async def test_a_dns_name_expands_to_every_address_and_keeps_state_across_refreshes() -> None:
    table: dict[str, list[str] | Exception] = {"task-service": ["10.0.0.1", "10.0.0.2"]}
    replicas = ReplicaSet(
        "task-service",
        ["http://task-service:8002", "http://10.0.0.9:8002"],
        resolver=fake_resolver(table),
    )
    await replicas.refresh_dns()
    assert [r.base_url for r in replicas.replicas] == [
        "http://10.0.0.1:8002",
        "http://10.0.0.2:8002",
        "http://10.0.0.9:8002",
    ]
    replicas.replicas[0].eject("connect")

    table["task-service"] = ["10.0.0.1", "10.0.0.3"]  # scaled: .2 gone, .3 new
    await replicas.refresh_dns()
    by_url = {r.base_url: r for r in replicas.replicas}
    assert set(by_url) == {"http://10.0.0.1:8002", "http://10.0.0.3:8002", "http://10.0.0.9:8002"}
    assert by_url["http://10.0.0.1:8002"].state is ReplicaState.EJECTED  # state kept

    table["task-service"] = OSError("resolver down")
    await replicas.refresh_dns()
    assert len(replicas.replicas) == 3  # last known addresses kept
    assert replicas.dns_error is not None


async def test_ipv6_addresses_are_bracketed() -> None:
    replicas = ReplicaSet("x", ["http://svc:80"], resolver=fake_resolver({"svc": ["::1"]}))
    await replicas.refresh_dns()
    assert replicas.replicas[0].base_url == "http://[::1]:80"


def test_urls_with_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="no path"):
        ReplicaSet("x", ["http://127.0.0.1:8002/api"])
    with pytest.raises(ValueError, match="at least one"):
        ReplicaSet("x", [])


def test_least_outstanding_then_round_robin() -> None:
    replicas = ReplicaSet("x", ["http://10.0.0.1:1", "http://10.0.0.2:1", "http://10.0.0.3:1"])
    a, b, c = replicas.replicas
    assert [replicas.pick() for _ in range(6)] == [a, b, c, a, b, c]
    a.in_flight = 2
    b.in_flight = 1
    assert replicas.pick() is c
    c.in_flight = 5
    assert replicas.pick() is b


def test_unroutable_and_tried_replicas_are_avoided_while_others_exist() -> None:
    replicas = ReplicaSet("x", ["http://10.0.0.1:1", "http://10.0.0.2:1"])
    a, b = replicas.replicas
    a.eject("connect")
    assert {replicas.pick() for _ in range(4)} == {b}
    assert replicas.pick(exclude=[b]) is a  # a retry goes to another replica, even a doubtful one
    b.probe_result(ok=False, latency_ms=None, error="refused")
    assert replicas.pick() in (a, b)  # none routable: all are candidates, the breaker decides


def test_passive_5xx_ejection_and_probe_restore() -> None:
    replica = Replica("http://10.0.0.1:1", "http://10.0.0.1:1", "10.0.0.1", 1)
    replica.record_status(500, eject_after_5xx=3)
    replica.record_status(502, eject_after_5xx=3)
    replica.record_status(200, eject_after_5xx=3)  # a success resets the streak
    replica.record_status(500, eject_after_5xx=3)
    replica.record_status(500, eject_after_5xx=3)
    assert replica.routable
    replica.record_status(503, eject_after_5xx=3)
    assert replica.state is ReplicaState.EJECTED
    assert replica.probe_result(ok=True, latency_ms=1.0, error=None) is True
    assert replica.routable
    assert replica.probe_result(ok=True, latency_ms=1.0, error=None) is False
