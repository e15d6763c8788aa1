from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["NEMO_GUARDRAILS_NO_USAGE_STATS"] = "1"

from tests.support.paths import PROJECT_ROOT
from tests.support.settings import SettingsFactory, make_settings
from webapp.settings import reset_settings_cache

pytest_plugins = ["tests.support.db_fixtures", "tests.support.triton_fixtures", "tests.support.browser_fixtures"]


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No test touches ./data or a developer's .env: settings point at a temp dir."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for key in list(os.environ):
        if key.startswith("GUARDCHAT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GUARDCHAT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("GUARDCHAT_RAILS_DIR", str(PROJECT_ROOT / "rails"))
    monkeypatch.chdir(tmp_path)
    reset_settings_cache()
    yield data_dir
    reset_settings_cache()


@pytest.fixture(scope="session")
def settings_factory() -> SettingsFactory:
    """``settings_factory(**values)`` -> ``Settings`` from ``values`` and GUARDCHAT_*, never a ``.env`` file
    (tests/support/settings.py). Session-scoped, so module and session fixtures can use it too."""
    return make_settings
