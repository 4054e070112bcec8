"""Flavor extra specs as nova's os-flavor-extra-specs showed them.

JSON: ``{"extra_specs": {key: value}}`` for the list and a create, ``{key: value}`` for one key
(show, update). XML, in no namespace as nova wrote it: ``<extra_specs>`` with ``<key1>value1
</key1>`` for keys that are element names and ``<extra_spec key="hw:cpu_policy">…`` for the
others; one key as ``<extra_spec key="key1">value1</extra_spec>`` whatever it is
(samples/nova-2013.1/os-flavor-extra-specs). Every answer is a well-formed document.
"""

from __future__ import annotations

from collections.abc import Mapping

from api_gateway.http.serializers import xml


def specs_xml(specs: Mapping[str, str]) -> bytes:
    """The list's and a create's answer."""
    return xml.flat_document(xml.extra_specs(specs))


def spec_xml(key: str, value: str) -> bytes:
    """One key's answer (show, update)."""
    return xml.flat_document(xml.extra_spec(key, value))
