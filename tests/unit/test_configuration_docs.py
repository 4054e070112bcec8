"""docs/configuration.md lists every setting the code reads."""

from __future__ import annotations

from pathlib import Path

from shared.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    missing = [
        f"STRATUS_{name.upper()}"
        for name in Settings.model_fields
        if f"STRATUS_{name.upper()}" not in text
    ]
    assert missing == []
