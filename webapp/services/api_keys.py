"""API keys: which user a bearer key belongs to."""

from __future__ import annotations

from sqlalchemy.orm import Session

from webapp.store import api_keys
from webapp.store.engine import Database
from webapp.store.models import User


def _resolve(session: Session, plaintext: str) -> tuple[User, int, bool] | None:
    key = api_keys.resolve_api_key(session, plaintext=plaintext)
    return None if key is None else (key.user, key.id, api_keys.last_use_is_stale(key))


class ApiKeys:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def key_user(self, plaintext: str) -> User | None:
        """The owner of a live key (banned or not: the caller decides), or None; notes when it was last used."""
        found = await self.db.run_read(_resolve, plaintext)
        if found is None:
            return None
        user, key_id, stale = found
        if stale:
            await self.db.run_write(lambda s: api_keys.touch_api_key(s, key_id=key_id))
        return user
