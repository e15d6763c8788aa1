"""The chat app's test users: settings for the app under test, accounts, and signing in over HTTP or in a browser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

from tests.support.app_server import RunningApp
from tests.support.paths import PROJECT_ROOT
from tests.support.settings import make_settings
from webapp.settings import Settings
from webapp.store import users
from webapp.store.models import User

PASSWORD = "password123"


def ui_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings from defaults and ``overrides`` only: module fixtures run before the per-test isolation of
    tests/conftest.py, so neither a developer's GUARDCHAT_* variables nor .env may leak in here."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "rails_dir": PROJECT_ROOT / "rails",
        "self_check_rails": False,
        "rate_limit_per_minute": 1000,
        **overrides,
    }
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDCHAT_")}
    with mock.patch.dict(os.environ, clean_env, clear=True):
        return make_settings(**values)


def create_user(app: RunningApp, username: str, role: str = "user") -> User:
    with app.ctx.db.write() as session:
        return users.create_user(session, username=username, password=PASSWORD, role=role)


@contextmanager
def signed_in(app: RunningApp, username: str) -> Iterator[httpx.Client]:
    """An HTTP client carrying ``username``'s session cookie, from the real sign-in form."""
    with httpx.Client(base_url=app.url, timeout=60) as client:
        response = client.post("/login", data={"username": username, "password": PASSWORD})
        assert response.status_code == 303 and response.headers["location"] == "/", response.text
        yield client


def sign_in(page: Any, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/", wait_until="load")
    assert page.url.endswith("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#gc-input textarea")
    page.wait_for_selector("#gc-account strong")
