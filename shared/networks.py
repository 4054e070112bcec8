"""The networks servers get fixed addresses from, and the grammar of ``STRATUS_NETWORKS``.

The setting is a ``;``-separated list of ``label=cidr`` pairs, IPv4 and IPv6 alike::

    private=10.0.0.0/16;private6=fd00:1::/64

The label is the network's id in the API (``addresses``, ``/servers/{id}/ips/{label}``).
Every server gets one address on every network. The first two addresses of a network (the
network address and its gateway) and, for IPv4, the broadcast address are never given out.

This module lives in ``shared`` because the settings model validates the grammar at startup,
so a typo stops a conductor before it schedules anything rather than at its first build.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

DEFAULT_NETWORKS = "private=10.0.0.0/16"

IPAddress = IPv4Address | IPv6Address

#: Addresses at the start of a network that are never given out: the network itself and the
#: gateway (the reference implementation's convention).
_RESERVED_AT_START = 2


class NetworkSyntaxError(ValueError):
    """``STRATUS_NETWORKS`` does not parse; the message names the faulty part."""


@dataclass(frozen=True)
class Network:
    """A network servers take fixed addresses from."""

    label: str
    cidr: IPv4Network | IPv6Network

    @property
    def version(self) -> int:
        return self.cidr.version

    @property
    def first(self) -> IPAddress:
        """The lowest address a server may get."""
        return self.cidr.network_address + _RESERVED_AT_START

    @property
    def last(self) -> IPAddress:
        """The highest address a server may get (IPv4 keeps its broadcast address)."""
        if isinstance(self.cidr, IPv4Network):
            return self.cidr.broadcast_address - 1
        return self.cidr.broadcast_address


def _network(part: str) -> Network:
    label, sep, cidr_text = (piece.strip() for piece in part.partition("="))
    if not sep or not label or not cidr_text:
        raise NetworkSyntaxError(f"{part!r} is not label=cidr (e.g. private=10.0.0.0/16)")
    if "/" in label or any(c.isspace() for c in label):
        raise NetworkSyntaxError(f"network label {label!r} may not contain '/' or spaces")
    try:
        cidr = ip_network(cidr_text, strict=True)
    except ValueError as exc:
        raise NetworkSyntaxError(f"{cidr_text!r} of network {label!r}: {exc}") from None
    network = Network(label, cidr)
    if int(network.first) > int(network.last):
        raise NetworkSyntaxError(f"network {label!r} ({cidr}) has no address to give out")
    return network


@functools.lru_cache(maxsize=8)
def parse_networks(text: str) -> tuple[Network, ...]:
    """The networks ``text`` names, in its order; raises ``NetworkSyntaxError``.

    Cached: the conductor asks for every build, and the text is the same setting each time.
    """
    networks = tuple(_network(part) for part in text.split(";") if part.strip())
    labels = [n.label for n in networks]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise NetworkSyntaxError(f"network labels must be unique: {', '.join(duplicates)}")
    return networks
