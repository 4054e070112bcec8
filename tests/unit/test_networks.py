"""``STRATUS_NETWORKS``: its grammar, and which addresses of a network are given out."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pydantic
import pytest

from shared.config import Settings
from shared.networks import DEFAULT_NETWORKS, NetworkSyntaxError, parse_networks


def test_the_default_is_one_private_ipv4_network() -> None:
    (network,) = parse_networks(Settings().networks)
    assert Settings().networks == DEFAULT_NETWORKS
    assert (network.label, str(network.cidr), network.version) == ("private", "10.0.0.0/16", 4)


def test_networks_keep_their_order_and_both_families() -> None:
    networks = parse_networks(" private = 10.1.0.0/24 ; private6=fd00:1::/64; ")
    assert [(n.label, n.version) for n in networks] == [("private", 4), ("private6", 6)]
    assert parse_networks("") == ()


def test_the_network_address_its_gateway_and_the_broadcast_are_never_given_out() -> None:
    v4, v6 = parse_networks("a=192.168.7.0/24;b=fd00:1::/120")
    assert (v4.first, v4.last) == (IPv4Address("192.168.7.2"), IPv4Address("192.168.7.254"))
    assert (v6.first, v6.last) == (IPv6Address("fd00:1::2"), IPv6Address("fd00:1::ff"))
    (smallest,) = parse_networks("tiny=10.9.0.0/30")
    assert smallest.first == smallest.last == IPv4Address("10.9.0.2")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("10.0.0.0/8", "label=cidr"),
        ("private=", "label=cidr"),
        ("=10.0.0.0/8", "label=cidr"),
        ("private=10.0.0.1/8", "host bits"),
        ("private=10.0.0.0/33", "private"),
        ("private=not-a-network", "private"),
        ("pri vate=10.0.0.0/8", "spaces"),
        ("a/b=10.0.0.0/8", "'/'"),
        ("p=10.0.0.0/31", "no address"),
        ("p=fd00::/127", "no address"),
        ("p=10.0.0.0/24;p=10.1.0.0/24", "unique"),
    ],
)
def test_a_malformed_list_is_refused_with_a_reason(text: str, complaint: str) -> None:
    with pytest.raises(NetworkSyntaxError, match=complaint):
        parse_networks(text)


def test_settings_refuse_a_malformed_list_at_startup() -> None:
    with pytest.raises(pydantic.ValidationError, match="label=cidr"):
        Settings.model_validate({"networks": "10.0.0.0/8"})
    assert Settings.model_validate({"networks": "x=10.0.0.0/8"}).networks == "x=10.0.0.0/8"
