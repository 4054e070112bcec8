"""A tiny helper to build WHERE clauses with numbered asyncpg parameters."""

from __future__ import annotations


class Params:
    """Collects positional parameters and hands out their ``$n`` placeholders."""

    def __init__(self, *initial: object) -> None:
        self.values: list[object] = list(initial)

    def add(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"
