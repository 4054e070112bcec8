"""A flavor's representation with nova 2013.1's flavor extensions (issue 13)."""

from __future__ import annotations

from api_gateway.http.serializers import xml
from api_gateway.views import extensions  # noqa: F401  (fills the XML namespaces)
from api_gateway.views.flavors import detail
from shared.db.records import Flavor

BASE = "http://localhost:8774"


def test_swap_is_blank_when_none_else_megabytes() -> None:
    assert detail(Flavor("1", "m1.tiny", 512, 1, 1), BASE, "t")["swap"] == ""
    swapped = Flavor("9", "big", 4096, 40, 2, swap_mb=1024, ephemeral_gb=20, rxtx_factor=2.5)
    shown = detail(swapped, BASE, "t")
    assert shown["swap"] == 1024
    assert shown["OS-FLV-EXT-DATA:ephemeral"] == 20
    assert shown["rxtx_factor"] == 2.5


def test_xml_writes_the_extension_booleans_as_nova_did() -> None:
    flavor = Flavor("1", "m1.tiny", 512, 1, 1, disabled=True)
    document = xml.document({"flavor": detail(flavor, BASE, "t")}).decode()
    assert 'os-flavor-access:is_public="True"' in document
    assert 'OS-FLV-DISABLED:disabled="True"' in document
    assert (
        'xmlns:OS-FLV-EXT-DATA="http://docs.openstack.org/compute/ext/flavor_extra_data/api/v1.1"'
        in document
    )
    assert 'swap=""' in document and 'rxtx_factor="1.0"' in document
