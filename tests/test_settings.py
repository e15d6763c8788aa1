from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from webapp.settings import InsecureSettingsError, Settings


def test_defaults_put_sqlite_under_the_data_dir(isolated_data_dir: Path) -> None:
    settings = Settings()
    assert settings.resolved_database_url == f"sqlite:///{isolated_data_dir / 'guardchat.db'}"
    assert (settings.context_tokens, settings.max_input_tokens, settings.max_output_tokens_limit) == (4096, 3072, 1024)


def test_env_prefix_and_dotenv_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("GUARDCHAT_TRITON_MODEL=from-dotenv\nGUARDCHAT_TEMPERATURE=0.1\n")
    monkeypatch.setenv("GUARDCHAT_TEMPERATURE", "0.3")
    settings = Settings()
    assert settings.triton_model == "from-dotenv"
    assert settings.temperature == 0.3  # the environment wins over .env


def test_production_refuses_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDCHAT_ENVIRONMENT", "production")
    with pytest.raises(InsecureSettingsError, match="GUARDCHAT_SECRET_KEY"):
        Settings().check_secure()
    monkeypatch.setenv("GUARDCHAT_SECRET_KEY", "x" * 40)
    Settings().check_secure()


def test_malformed_database_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDCHAT_DATABASE_URL", "not a url")
    with pytest.raises(ValidationError, match="GUARDCHAT_DATABASE_URL 'not a url' is not a URL"):
        Settings()


def test_every_limit_has_help_text() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_self_check_defaults_off_only_for_the_bundled_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().self_check_enabled is False  # smollm2: answers "Yes" to every self-check prompt
    monkeypatch.setenv("GUARDCHAT_TRITON_MODEL", "Llama3-70B-PPO-Chat")
    assert Settings().self_check_enabled is True
    monkeypatch.setenv("GUARDCHAT_SELF_CHECK_RAILS", "true")
    monkeypatch.setenv("GUARDCHAT_TRITON_MODEL", "smollm2_stream")
    assert Settings().self_check_enabled is True
