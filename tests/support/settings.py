"""The one way tests build a ``Settings``: the given values over the GUARDCHAT_* environment, never a ``.env``.

Tests and fixtures take it as the ``settings_factory`` fixture (tests/conftest.py, any scope); plain helper
functions import ``make_settings``. tests/test_settings.py builds ``Settings`` directly: it tests the class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webapp.settings import Settings

SettingsFactory = Callable[..., Settings]  # the type of the settings_factory fixture


def make_settings(**values: Any) -> Settings:
    """``Settings(**values)`` without reading a ``.env`` file (GUARDCHAT_* variables still apply)."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
