"""A tiny helper to build WHERE clauses with numbered asyncpg parameters."""

from __future__ import annotations

from datetime import datetime


class Params:
    """Collects positional parameters and hands out their ``$n`` placeholders."""

    def __init__(self, *initial: object) -> None:
        self.values: list[object] = list(initial)

    def add(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


class Where:
    """The conditions of a list's WHERE clause on the table ``alias``, each added only when its
    value is given (None: "not filtered on"), the values as ``params``.

    Starts with what every list of rows that are soft-deleted has: live rows only, or, with
    ``changes_since``, every row changed at or after it, deleted ones included (guide 1.5)."""

    def __init__(self, params: Params, alias: str, changes_since: datetime | None) -> None:
        self.params = params
        self.alias = alias
        if changes_since is None:
            self.conditions = [f"{alias}.deleted_at IS NULL"]
        else:
            self.conditions = [f"{alias}.updated_at >= {params.add(changes_since)}"]

    def compare(self, column: str, operator: str, value: object | None) -> None:
        """``column operator value``, e.g. ``("name", "=", name)``."""
        if value is not None:
            self.conditions.append(f"{self.alias}.{column} {operator} {self.params.add(value)}")

    def among(self, column: str, values: frozenset[str] | None, *, negate: bool = False) -> None:
        """``column`` is one of ``values`` (with ``negate``: none of them)."""
        if values is not None:
            test = "<> ALL" if negate else "= ANY"
            placeholder = self.params.add(sorted(values))
            self.conditions.append(f"{self.alias}.{column} {test}({placeholder}::text[])")
