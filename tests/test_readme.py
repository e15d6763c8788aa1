from __future__ import annotations

from tests.support.paths import PROJECT_ROOT
from webapp.settings import Settings


def test_readme_opens_with_the_two_commands_and_lists_every_setting() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    head = readme.split("## What it is")[0]
    assert "make run" in head and "make test" in head
    missing = [name for name in Settings.model_fields if f"`GUARDCHAT_{name.upper()}`" not in readme]
    assert missing == []
