"""The README stays true: its first lines give the two commands, and its config reference lists every key."""
from __future__ import annotations

from pathlib import Path

from tuneforge.config import reference_rows

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_opens_with_the_two_commands():
    head = README.read_text(encoding="utf-8").splitlines()[:8]
    assert any(line.startswith("make demo") for line in head) and any(line.startswith("make test") for line in head)


def test_config_reference_lists_every_key():
    text = README.read_text(encoding="utf-8")
    missing = [key for key, _, _ in reference_rows() if f"`{key}`" not in text]
    assert not missing, f"README config reference lacks {missing}"
