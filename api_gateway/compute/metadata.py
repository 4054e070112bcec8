"""What changing metadata means, for servers and images alike (guide 2.6–2.6.6).

Each write is an edit that turns the current set into the new one: replace all (PUT), merge
(POST), set one item (PUT on a key) or delete one item. The domain layer reads the current set
under the owner's row lock, applies the edit, checks the item limit and writes the difference,
so concurrent writes cannot together pass ``maxServerMeta``/``maxImageMeta``. The limit is the
``metadata_items`` quota of the project the request acts in (an administrator's override, else
the setting), for servers and images alike, as nova 2013.1 checked both against it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from api_gateway.compute.quotas import check_metadata_items, project_quotas
from shared.config import Settings
from shared.db.pool import Executor
from shared.errors import NotFound


class MetadataEdit(ABC):
    """A change of a whole metadata set; ``grows`` when it may add items (limit checked)."""

    grows: ClassVar[bool] = True

    @abstractmethod
    def apply(self, current: Mapping[str, str]) -> dict[str, str]:
        """The whole set after this edit of ``current``."""


@dataclass(frozen=True)
class ReplaceAll(MetadataEdit):
    """The set becomes exactly ``items``: other items are deleted (Set Metadata)."""

    items: Mapping[str, str] = field(default_factory=dict)

    def apply(self, current: Mapping[str, str]) -> dict[str, str]:
        return dict(self.items)


@dataclass(frozen=True)
class Merge(MetadataEdit):
    """``items`` overwrite items of the same key; others stay (Update Metadata)."""

    items: Mapping[str, str] = field(default_factory=dict)

    def apply(self, current: Mapping[str, str]) -> dict[str, str]:
        return {**current, **self.items}


@dataclass(frozen=True)
class SetItem(MetadataEdit):
    """Create or replace one item (Set Metadata Item)."""

    key: str
    value: str

    def apply(self, current: Mapping[str, str]) -> dict[str, str]:
        return {**current, self.key: self.value}


@dataclass(frozen=True)
class DeleteItem(MetadataEdit):
    """Remove one item; 404 when there is no such key (Delete Metadata Item)."""

    grows: ClassVar[bool] = False
    key: str

    def apply(self, current: Mapping[str, str]) -> dict[str, str]:
        if self.key not in current:
            raise NotFound("Metadata item was not found")
        return {k: v for k, v in current.items() if k != self.key}


def edited(
    quotas: Mapping[str, int], edit: MetadataEdit, current: Mapping[str, str]
) -> dict[str, str]:
    """The set after ``edit``, in key order; 413 overLimit if it would hold more items than
    the project's ``metadata_items`` quota (``quotas``) allows (a deletion always may shrink
    a set, even one over a lowered limit)."""
    new = edit.apply(current)
    if edit.grows:
        check_metadata_items(quotas, len(new))
    return dict(sorted(new.items()))


async def edited_for(
    conn: Executor,
    settings: Settings,
    project_id: str,
    edit: MetadataEdit,
    current: Mapping[str, str],
) -> dict[str, str]:
    """``edited`` against ``project_id``'s quotas, read only when the edit may add items (a
    deletion needs no query)."""
    quotas = await project_quotas(conn, settings, project_id) if edit.grows else {}
    return edited(quotas, edit, current)
