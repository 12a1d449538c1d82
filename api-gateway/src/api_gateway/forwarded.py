"""Who the client is: the connection's peer, or, when the peer is a trusted proxy (a load
balancer or ingress in front of the gateway, `GATEWAY_TRUSTED_PROXIES`), the address that
proxy put in `X-Forwarded-For`.

Each proxy appends the address it saw, so the entries are read from the right: the peer first,
then each entry left of it as long as the one to its right is a trusted proxy. The first
address that is not a trusted proxy is the client. Entries further left were written by the
client itself and prove nothing. With no trusted proxies (the default) the peer is the client,
whatever the headers say.

The per-address rate limits key on that address, and the upstreams learn it the way they
always have: it is the last entry of the `X-Forwarded-For` the gateway sends (user-service's
login throttle reads that entry). Behind trusted proxies their own hops are dropped from the
end of the list instead of the load balancer's address being appended.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# An address is at most this long in a header (an IPv6 address with a zone fits).
_MAX_ADDRESS = 64


@dataclass(frozen=True, slots=True)
class ClientAddress:
    address: str | None  # what the per-address limits key on (None: unknown peer)
    forwarded_for: str | None  # the X-Forwarded-For sent upstream; its last entry is `address`


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """`["10.0.0.0/8", "192.0.2.7"]` → networks (a bare address is a /32 or /128); ValueError
    for anything that is not an address or network."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


class TrustedProxies:
    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: bytes | None) -> ClientAddress:
        """The client of a request from `peer` that carried `forwarded_for` (every
        X-Forwarded-For value, comma-joined), and the X-Forwarded-For to send on."""
        incoming = forwarded_for.decode("latin-1") if forwarded_for else ""
        if not self.networks or peer is None or not self.trusts(peer):
            if peer is None:
                return ClientAddress(None, incoming or None)
            return ClientAddress(peer, f"{incoming}, {peer}" if incoming else peer)
        hops = [hop.strip() for hop in incoming.split(",")]
        hops = [hop for hop in hops if hop]
        client = peer  # trusted: look left of it
        while hops:
            candidate = hops[-1]
            if not _is_address(candidate):
                break  # a proxy we trust wrote garbage: the last trusted hop is all we know
            hops.pop()
            client = candidate
            if not self.trusts(candidate):
                break
        return ClientAddress(client, ", ".join([*hops, client]))


def _is_address(value: str) -> bool:
    if len(value) > _MAX_ADDRESS:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
