"""API keys: resolution, revocation, and when a use is written down."""

from __future__ import annotations

from datetime import timedelta

from webapp.store import api_keys, users
from webapp.store.engine import Database
from webapp.store.models import ApiKey, utcnow


def test_a_key_resolves_to_its_owner_until_revoked(database: Database) -> None:
    with database.write() as s:
        alice = users.create_user(s, username="alice", password="password123")
        _, plaintext = api_keys.create_api_key(s, user=alice)
    with database.read() as s:
        key = api_keys.resolve_api_key(s, plaintext=plaintext)
        assert key is not None and key.user.username == "alice"
        assert api_keys.resolve_api_key(s, plaintext=plaintext + "x") is None
    with database.write() as s:
        api_keys.revoke_api_key(s, user=alice, prefix=plaintext[:10])
    with database.read() as s:
        assert api_keys.resolve_api_key(s, plaintext=plaintext) is None


def test_last_use_is_written_at_most_once_a_minute(database: Database) -> None:
    with database.write() as s:
        alice = users.create_user(s, username="alice", password="password123")
        key, _ = api_keys.create_api_key(s, user=alice)
    with database.read() as s:
        fresh = s.get(ApiKey, key.id)
        assert fresh is not None and api_keys.last_use_is_stale(fresh)  # never used: write it
    with database.write() as s:
        api_keys.touch_api_key(s, key_id=key.id)
    with database.read() as s:
        used = s.get(ApiKey, key.id)
        assert used is not None and used.last_used_at is not None
        # Read back from the database (SQLite drops the offset): a use seconds later writes nothing...
        assert not api_keys.last_use_is_stale(used)
        # ...a use a minute later does.
        assert api_keys.last_use_is_stale(used, now=utcnow() + timedelta(minutes=1, seconds=1))
