"""Everything one app process shares: settings, database, the chat service and the other services."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.chat.service import ChatService
from webapp.services.accounts import Accounts
from webapp.services.api_keys import ApiKeys
from webapp.services.conversations import Conversations
from webapp.services.moderation import Moderation
from webapp.settings import Settings
from webapp.store.engine import Database
from webapp.store.liveness import ProcessLease

ReadinessProbe = Callable[[], Awaitable[bool]]


def _ping(session: Session) -> bool:
    session.execute(text("SELECT 1"))
    return True


@dataclass
class AppContext:
    settings: Settings
    db: Database
    chat: ChatService
    model_ready: ReadinessProbe
    lease: ProcessLease | None = None
    accounts: Accounts = field(init=False)
    api_keys: ApiKeys = field(init=False)
    conversations: Conversations = field(init=False)
    moderation: Moderation = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = Accounts(self.db)
        self.api_keys = ApiKeys(self.db)
        self.conversations = Conversations(self.db)
        self.moderation = Moderation(self.db)

    async def database_ready(self) -> bool:
        try:
            return await asyncio.wait_for(self.db.run_read(_ping), timeout=3)
        except Exception:
            return False
