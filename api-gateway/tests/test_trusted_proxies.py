"""Behind a load balancer: per-address limits and the address user-service sees are the real
client's, from X-Forwarded-For, only when the peer is a trusted proxy (issue 21, point 6)."""

from __future__ import annotations

import pytest
from api_gateway.forwarded import TrustedProxies, parse_networks
from conftest import BackendStarter, GatewayFactory, gateway_settings
from pydantic import ValidationError


def header(record: dict[str, object], name: str) -> list[str]:
    headers: list[tuple[str, str]] = record["headers"]  # type: ignore[assignment]
    return [value for key, value in headers if key == name]


async def test_behind_a_trusted_proxy_each_client_has_its_own_address_budget(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    # The test client connects from 127.0.0.1: here, the load balancer.
    async with make_gateway(
        tasks=[server.url], rate_limit_per_ip=2, trusted_proxies="127.0.0.0/8, 10.0.0.0/8"
    ) as gw:
        ada = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(2):
            assert (await gw.client.get("/api/v1/tasks", headers=ada)).status_code == 200
        assert (await gw.client.get("/api/v1/tasks", headers=ada)).status_code == 429
        # Another client behind the same balancer (and a second trusted hop) still passes.
        bob = {"X-Forwarded-For": "198.51.100.4, 10.1.2.3"}
        response = await gw.client.get("/api/v1/tasks", headers=bob)
        assert response.status_code == 200
        assert response.headers["ratelimit-remaining"] == "1"
        # Upstreams see the client as the last X-Forwarded-For entry, as they always read it.
        assert header(backend.requests[-1], "x-forwarded-for") == ["198.51.100.4"]


async def test_a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(
    make_gateway: GatewayFactory, start_backend: BackendStarter
) -> None:
    backend, server = await start_backend()
    async with make_gateway(
        tasks=[server.url], rate_limit_per_ip=2, trusted_proxies="10.0.0.0/8"
    ) as gw:
        for attempt in range(2):
            forged = {"X-Forwarded-For": f"203.0.113.{attempt}"}
            assert (await gw.client.get("/api/v1/tasks", headers=forged)).status_code == 200
        forged = {"X-Forwarded-For": "203.0.113.99"}
        assert (await gw.client.get("/api/v1/tasks", headers=forged)).status_code == 429
        assert header(backend.requests[-1], "x-forwarded-for") == ["203.0.113.1, 127.0.0.1"]


def test_the_client_is_the_first_untrusted_address_from_the_right() -> None:
    proxies = TrustedProxies(parse_networks(["10.0.0.0/8", "2001:db8::/32"]))
    # Untrusted peer: the peer, whatever the header says (appended to it).
    plain = proxies.client("192.0.2.1", b"1.1.1.1")
    assert (plain.address, plain.forwarded_for) == ("192.0.2.1", "1.1.1.1, 192.0.2.1")
    # Trusted peer and hop: the client they saw; what the client itself wrote stays on the left.
    behind = proxies.client("10.0.0.1", b"6.6.6.6, 203.0.113.5, 10.9.9.9")
    assert (behind.address, behind.forwarded_for) == ("203.0.113.5", "6.6.6.6, 203.0.113.5")
    assert proxies.client("2001:db8::1", b"2001:db8:1::5, 198.51.100.1").address == ("198.51.100.1")
    # A trusted proxy that sent no header, or garbage: the last trusted hop is all we know.
    assert proxies.client("10.0.0.1", None).address == "10.0.0.1"
    assert proxies.client("10.0.0.1", b"unknown").address == "10.0.0.1"
    assert proxies.client("10.0.0.1", b"unknown, 10.0.0.2").address == "10.0.0.2"
    # None configured: the peer, always.
    assert TrustedProxies().client("10.0.0.1", b"203.0.113.5").address == "10.0.0.1"


def test_a_bad_trusted_proxy_entry_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="not-a-network"):
        gateway_settings(trusted_proxies="10.0.0.0/8, not-a-network")
