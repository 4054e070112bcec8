"""The v2 XML representation, derived from the JSON shape by the guide's rules (guide 1.2).

Scalars become attributes; objects become child elements; ``links`` become ``atom:link``
children after the others; ``message``, ``details`` and ``description`` are text elements;
lists become a wrapper element with one child per item (``servers`` -> ``<server>``).
``metadata`` and ``addresses`` have shapes of their own (``<meta key>``, ``<network id>``),
as do the absolute and rate limits. Extension members (``OS-EXT-STS:vm_state``) are written in
their extension's namespace. Documents are built as text so that a collection can be joined
from items rendered earlier (``item`` writes one without namespace declarations).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

COMPUTE_NS = "http://docs.openstack.org/compute/api/v1.1"
COMMON_NS = "http://docs.openstack.org/common/api/v1.0"
ATOM_NS = "http://www.w3.org/2005/Atom"

DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"

#: Root elements in the common namespace; every other root is in the compute namespace.
_COMMON_ROOTS = {"versions", "version", "choices", "extensions", "extension", "limits"}

#: The element each item of a list is written as.
_ITEM = {
    "servers": "server",
    "images": "image",
    "flavors": "flavor",
    "extensions": "extension",
    "versions": "version",
    "choices": "version",
    "media-types": "media-type",
    "rates": "rate",
}

#: Lists whose items repeat directly inside the parent, with no wrapper element.
_UNWRAPPED = {"limit", "ip"}

_TEXT_MEMBERS = {"message", "details", "description"}

#: Extension alias -> namespace, filled by the extensions registry.
EXTENSION_NAMESPACES: dict[str, str] = {}


#: characters XML 1.0 cannot carry at all (control characters, lone surrogates, U+FFFE/F)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: str) -> str:
    """Element text: escaped, and characters XML cannot carry (which JSON can, so a user may
    have stored them) replaced by U+FFFD rather than producing a document no parser reads."""
    return escape(_NOT_XML.sub("\ufffd", value))


def _quoted(value: str) -> str:
    return quoteattr(_NOT_XML.sub("\ufffd", value))


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: Attributes whose booleans nova 2013.1 wrote as Python did (``"True"``, ``"False"``): the
#: flavor extensions' (its samples, which clients parsing them compare with).
_PYTHON_BOOLEANS = {"os-flavor-access:is_public", "OS-FLV-DISABLED:disabled"}


def _attribute(name: str, value: object) -> str:
    if isinstance(value, bool) and name in _PYTHON_BOOLEANS:
        return f" {name}={_quoted(str(value))}"
    return f" {name}={_quoted(_value(value))}"


def _links(links: Iterable[Mapping[str, str]]) -> str:
    return "".join(
        "<atom:link" + "".join(_attribute(k, v) for k, v in link.items() if v is not None) + "/>"
        for link in links
    )


def _metadata(tag: str, metadata: Mapping[str, str]) -> str:
    items = "".join(f"<meta key={_quoted(k)}>{_text(v)}</meta>" for k, v in metadata.items())
    return f"<{tag}>{items}</{tag}>" if items else f"<{tag}/>"


def addresses(networks: Mapping[str, list[Mapping[str, Any]]]) -> str:
    return "".join(network(name, ips) for name, ips in networks.items())


def network(name: str, ips: list[Mapping[str, Any]]) -> str:
    body = "".join(
        f"<ip{_attribute('version', ip['version'])}{_attribute('addr', ip['addr'])}/>" for ip in ips
    )
    return f"<network{_attribute('id', name)}>{body}</network>"


def _absolute(limits: Mapping[str, object]) -> str:
    return "".join(
        f"<limit{_attribute('name', k)}{_attribute('value', v)}/>" for k, v in limits.items()
    )


def item(tag: str, value: Any) -> str:
    """One element (no namespace declarations) for the member ``tag`` holding ``value``."""
    if value is None:
        return f"<{tag}/>"
    if not isinstance(value, Mapping):
        return f"<{tag}>{_text(_value(value))}</{tag}>"
    attributes: list[str] = []
    children: list[str] = []
    links = ""
    for key, member in value.items():
        if member is None:
            continue
        if key == "links":
            links = _links(member)
        elif key.endswith("_links"):
            continue  # a nested collection's links go inside its own element
        elif key == "metadata" and isinstance(member, Mapping):
            children.append(_metadata(key, member))
        elif key == "addresses" and isinstance(member, Mapping):
            inner = addresses(member)
            children.append(f"<addresses>{inner}</addresses>" if inner else "<addresses/>")
        elif key == "absolute" and isinstance(member, Mapping):
            children.append(f"<absolute>{_absolute(member)}</absolute>")
        elif key in _TEXT_MEMBERS:
            children.append(f"<{key}>{_text(_value(member))}</{key}>")
        elif isinstance(member, Mapping):
            children.append(item(key, member))
        elif isinstance(member, list):
            children.append(_list(key, member))
        else:
            attributes.append(_attribute(key, member))
    body = "".join(children) + links
    opening = f"<{tag}{''.join(attributes)}"
    return f"{opening}>{body}</{tag}>" if body else f"{opening}/>"


def _list(key: str, items: list[Any]) -> str:
    if key in _UNWRAPPED:
        return "".join(item(key, entry) for entry in items)
    wrapper = "rates" if key == "rate" else key
    child = _ITEM.get(wrapper, wrapper.removesuffix("s"))
    inner = "".join(item(child, entry) for entry in items)
    return f"<{wrapper}>{inner}</{wrapper}>"


def _declarations(root: str, body: str) -> str:
    namespace = COMMON_NS if root in _COMMON_ROOTS else COMPUTE_NS
    declared = f" xmlns={quoteattr(namespace)}"
    if "<atom:link" in body:
        declared += f" xmlns:atom={quoteattr(ATOM_NS)}"
    for alias, extension_ns in EXTENSION_NAMESPACES.items():
        if f" {alias}:" in body or f"<{alias}:" in body:
            declared += f" xmlns:{alias}={quoteattr(extension_ns)}"
    return declared


def _declare(root: str, element: str) -> str:
    """Put the namespace declarations on ``element``'s opening tag."""
    at = len(root) + 1
    return element[:at] + _declarations(root, element) + element[at:]


def document(body: Mapping[str, Any]) -> bytes:
    """A whole XML document for a JSON body of one member (``{"server": {...}}``), or of a
    collection and its links (``{"servers": [...], "servers_links": [...]}``)."""
    root = next(k for k in body if not k.endswith("_links"))
    value = body[root]
    if isinstance(value, list):
        child = _ITEM.get(root, root.removesuffix("s"))
        items = [item(child, entry) for entry in value]
        return collection(root, [i.encode() for i in items], body.get(f"{root}_links", []))
    if root in _SHAPED_ROOTS and isinstance(value, Mapping):
        return (DECLARATION + _declare(root, _SHAPED_ROOTS[root](value))).encode()
    return (DECLARATION + _declare(root, item(root, value))).encode()


def _meta(pair: Mapping[str, str]) -> str:
    """One metadata item as a document root: ``<meta key="k">v</meta>`` (Ex 2.59)."""
    return "".join(f"<meta key={_quoted(k)}>{_text(v)}</meta>" for k, v in pair.items())


def _addresses_root(networks: Mapping[str, list[Mapping[str, Any]]]) -> str:
    inner = addresses(networks)
    return f"<addresses>{inner}</addresses>" if inner else "<addresses/>"


#: Roots whose documents have shapes of their own (guide 1.2): a metadata set (Ex 2.49),
#: one metadata item (Ex 2.59) and a server's addresses (Ex 2.21).
_SHAPED_ROOTS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "metadata": lambda value: _metadata("metadata", value),
    "meta": _meta,
    "addresses": _addresses_root,
}


def collection(root: str, items: list[bytes], links: Sequence[Mapping[str, str]]) -> bytes:
    """A collection document from items already written with ``item``."""
    inner = b"".join(items).decode() + _links(links)
    element = f"<{root}>{inner}</{root}>" if inner else f"<{root}/>"
    return (DECLARATION + _declare(root, element)).encode()


def flat(tag: str, value: Mapping[str, Any]) -> str:
    """nova's ``make_flat_dict``: one text child per member, in no namespace (the XML of
    extensions nova wrote that way, os-keypairs among them)."""
    inner = "".join(
        f"<{key}>{_text(_value(member))}</{key}>"
        for key, member in value.items()
        if member is not None
    )
    return f"<{tag}>{inner}</{tag}>"


#: Keys written as element names: a conservative subset of XML's NCName that every parser
#: takes without a namespace declaration (ASCII, no colon, not the reserved ``xml…``).
_PLAIN_NAME = re.compile(r"(?![Xx][Mm][Ll])[A-Za-z_][A-Za-z0-9._-]*")


def is_plain_name(key: str) -> bool:
    """Can ``key`` be an element's name in any XML parser's eyes?"""
    return _PLAIN_NAME.fullmatch(key) is not None


def extra_spec(key: str, value: str) -> str:
    """One flavor extra spec whatever its key: ``<extra_spec key="hw:cpu_policy">…`` (nova's
    form for the single-key show and update, which carries keys no element name can)."""
    return f"<extra_spec key={_quoted(key)}>{_text(value)}</extra_spec>"


def extra_specs(specs: Mapping[str, str]) -> str:
    """nova's ``<extra_specs><key1>value1</key1></extra_specs>`` for keys that are element
    names, so its samples and the clients reading them still match; every other key (a colon,
    a space, a leading digit…) as ``<extra_spec key=…>``, since naming an element after it
    would give a document no parser accepts."""
    inner = "".join(
        f"<{key}>{_text(value)}</{key}>" if is_plain_name(key) else extra_spec(key, value)
        for key, value in specs.items()
    )
    return f"<extra_specs>{inner}</extra_specs>" if inner else "<extra_specs/>"


def flat_document(body: str) -> bytes:
    """A document of ``flat`` elements, with no namespace declaration."""
    return (DECLARATION + body).encode()
