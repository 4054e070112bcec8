"""Request body of ``PUT /os-quota-sets/{project}`` (nova 2013.1's os-quota-sets).

Any of a quota set's keys, each an integer of -1 (unlimited) or more; ``id`` and
``tenant_id`` are accepted and ignored, as nova did; any other key is refused (400).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Limit = Annotated[int | None, Field(default=None, ge=-1)]


class QuotaSetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    tenant_id: str | None = None
    instances: Limit = None
    cores: Limit = None
    ram: Limit = None
    floating_ips: Limit = None
    fixed_ips: Limit = None
    metadata_items: Limit = None
    injected_files: Limit = None
    injected_file_content_bytes: Limit = None
    injected_file_path_bytes: Limit = None
    key_pairs: Limit = None
    security_groups: Limit = None
    security_group_rules: Limit = None

    def limits(self) -> dict[str, int]:
        """The quotas the request sets, by key."""
        return self.model_dump(exclude={"id", "tenant_id"}, exclude_none=True)


class QuotaSetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quota_set: QuotaSetUpdate
