"""API keys: shown once, stored as a SHA-256 hash (keys are 256-bit random, so no slow hash is needed)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from webapp.store.errors import NotFoundError
from webapp.store.models import ApiKey, User, utcnow

KEY_PREFIX = "gc-"


def _digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def create_api_key(session: Session, *, user: User, name: str = "") -> tuple[ApiKey, str]:
    """Create a key for ``user``; returns the row and the plaintext, which is never stored."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(user_id=user.id, prefix=plaintext[:10], key_hash=_digest(plaintext), name=name[:100])
    session.add(key)
    session.flush()
    return key, plaintext


def resolve_api_key(session: Session, *, plaintext: str) -> ApiKey | None:
    """The live key matching ``plaintext`` (revoked keys resolve to None)."""
    if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 200:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == _digest(plaintext)))
    if key is None or key.revoked_at is not None:
        return None
    return key


LAST_USED_RESOLUTION = timedelta(minutes=1)


def last_use_is_stale(key: ApiKey, *, now: datetime | None = None) -> bool:
    """Whether ``key.last_used_at`` should be written for a use now: at most once a minute per key, so a busy
    client's requests are read-only and do not queue on the database's write lock."""
    last = key.last_used_at
    if last is None:
        return True
    now = now or utcnow()
    if last.tzinfo is None:  # SQLite keeps no offset; every timestamp is written in UTC
        now = now.replace(tzinfo=None)
    return now - last >= LAST_USED_RESOLUTION


def touch_api_key(session: Session, *, key_id: int) -> None:
    """Record a use of the key now: one UPDATE, without loading the key (the profile under 64 API users put
    a tenth of the app's CPU in loading keys for this)."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(last_used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def list_api_keys(session: Session, *, user: User) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id)))


def revoke_api_key(session: Session, *, user: User, prefix: str) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.prefix == prefix))
    if key is None:
        raise NotFoundError(f"no API key with prefix {prefix!r} for {user.username}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key
