"""Everything one app process shares: settings, database, guard and the chat service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text

from webapp.chat.service import ChatService
from webapp.settings import Settings
from webapp.store.engine import Database
from webapp.store.liveness import ProcessLease

ReadinessProbe = Callable[[], Awaitable[bool]]


@dataclass
class AppContext:
    settings: Settings
    db: Database
    chat: ChatService
    model_ready: ReadinessProbe
    lease: ProcessLease | None = None

    async def database_ready(self) -> bool:
        def ping() -> bool:
            with self.db.read() as session:
                session.execute(text("SELECT 1"))
            return True

        try:
            return await asyncio.wait_for(asyncio.to_thread(ping), timeout=3)
        except Exception:
            return False
