"""The case registry of the conformance suite and the allowances cases share.

A case names the samples it covers, the status it expects and the sample its response must
match in structure (see shapes.py); its coroutine sends the request the guide shows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.conformance.shapes import Allowances
from tests.conformance.support import Env, Raw

JSON = "application/json"
XML = "application/xml"


@dataclass(frozen=True)
class Case:
    name: str
    covers: tuple[str, ...]
    status: int
    compare: str | None
    allow: Allowances
    run: Callable[[Env], Awaitable[Raw]]


CASES: dict[str, Case] = {}
NO_ALLOWANCES = Allowances()


def case(
    name: str,
    *,
    covers: tuple[str, ...],
    status: int,
    compare: str | None = None,
    allow: Allowances = NO_ALLOWANCES,
) -> Callable[[Callable[[Env], Awaitable[Raw]]], Callable[[Env], Awaitable[Raw]]]:
    def register(run: Callable[[Env], Awaitable[Raw]]) -> Callable[[Env], Awaitable[Raw]]:
        assert name not in CASES, name
        CASES[name] = Case(name, covers, status, compare, allow, run)
        return run

    return register


def allowances(
    *,
    extra: tuple[str, ...] = (),
    missing: tuple[str, ...] = (),
    missing_rels: tuple[str, ...] = (),
    extra_rels: tuple[str, ...] = (),
) -> Allowances:
    return Allowances(
        frozenset(extra), frozenset(missing), frozenset(missing_rels), frozenset(extra_rels)
    )


#: faults carry ``details`` only when there are details to give (the member is optional)
FAULT = allowances(missing=("details",))
#: the version documents add ``version``/``min_version`` for today's clients (JSON only)
VERSION_JSON = allowances(extra=("version", "min_version"))
#: images: no tenant_id/user_id (tempest rejects them), no alternate link (we are the image
#: service); see docs/compatibility.md
IMAGE_ALLOW = allowances(missing=("tenant_id", "user_id"), missing_rels=("alternate",))
#: the guide's paging samples show only a self link; images carry a bookmark too (guide 1.3)
PAGE_ALLOW = allowances(extra_rels=("bookmark",))


#: flavors carry nova 2013.1's os-flavor-swap and os-flavor-rxtx members, which have no prefix
#: (the prefixed flavor extension members pass as extension members); docs/compatibility.md
FLAVOR_ALLOW = allowances(extra=("swap", "rxtx_factor"))

#: ``progress`` is shown in ACTIVE, BUILD, REBUILD, RESIZE and VERIFY_RESIZE only (nova's rule);
#: show and detail carry os-keypairs' ``key_name`` and os-config-drive's ``config_drive``,
#: which have no prefix (docs/compatibility.md)
SERVER_ALLOW = allowances(missing=("progress",), extra=("key_name", "config_drive"))

#: Samples of chapters 1–2 that no request can reproduce, and why (docs/compatibility.md
#: gives the same list).
NOT_APPLICABLE = {
    "1.4-id-image-reference.json": "uses `image`/`flavor` instead of `imageRef`/`flavorRef` "
    "and is not valid JSON (docs/compatibility.md); its XML twin 1.5 is covered",
    "1.18-paginated-metadata-in-an-image.xml": "embedded metadata is never paginated: a "
    "resource holds at most maxImageMeta items, all shown (nova did the same)",
    "1.19-paginated-metadata-in-an-image.json": "as 1.18",
    "1.38-extended-server-response.xml": "illustrates a Rackspace block-storage extension "
    "(RS-CBS) that is not part of the API",
    "1.39-extended-server-response.json": "as 1.38",
    "1.40-extended-action.xml": "illustrates an RS-CBS action; not part of the API",
    "1.41-extended-action.json": "as 1.40 (and not valid JSON, docs/compatibility.md)",
    "2.24-list-addresses-by-network-response.json": "not valid JSON; Stratus answers in "
    "nova's form, `{\"<network>\": [...]}`, which today's clients and tempest expect, "
    "checked against nova-2013.1/server-ips-network-resp.json",
    "extra/faults/notImplemented.json": "no operation of chapters 1-3 is left unimplemented, "
    "so nothing answers 501",
    "extra/faults/notImplemented.xml": "as notImplemented.json",
}
