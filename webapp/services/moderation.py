"""What staff may do: read the queue, a flag, the audit log and the stats; act on flags; ban and unban authors.

Every read and write checks the actor's role in the store as well; the pages check it first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from webapp.moderation.detail import FlagDetail, load_flag_detail
from webapp.moderation.export import FlagExport, start_export
from webapp.moderation.guard_quality import RailWeek, ThresholdPoint, rail_weeks, threshold_points
from webapp.moderation.queue import QueueFilter, QueuePage, count_queue, known_rails, list_queue
from webapp.moderation.stats import ModerationStats, moderation_stats
from webapp.store.accounts import ban_user, unban_user
from webapp.store.audit import AUDIT_ACTIONS, PAST_TENSE, AuditEntry, AuditFilter, AuditPage, list_audit
from webapp.store.engine import Database
from webapp.store.flags import BulkOutcome, act_on_flag, act_on_flags
from webapp.store.models import FLAG_SOURCES, FLAG_STATUSES, User

__all__ = [
    "AUDIT_ACTIONS",
    "FLAG_SOURCES",
    "FLAG_STATUSES",
    "PAST_TENSE",
    "AuditEntry",
    "AuditFilter",
    "AuditPage",
    "BulkOutcome",
    "FlagDetail",
    "FlagExport",
    "Moderation",
    "ModerationStats",
    "QueuePage",
    "RailWeek",
    "ThresholdPoint",
]


class Moderation:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- reads ------------------------------------------------------------------------------------------

    async def queue(
        self, actor: User, *, filters: QueueFilter, sort: str, after: str | None, limit: int
    ) -> tuple[QueuePage, int]:
        """One page of the queue and how many flags match in all, read together."""

        def read(session: Session) -> tuple[QueuePage, int]:
            page = list_queue(session, actor=actor, filters=filters, sort=sort, after=after, limit=limit)
            return page, count_queue(session, actor=actor, filters=filters)

        return await self.db.run_read(read)

    async def known_rails(self, actor: User) -> list[str]:
        return await self.db.run_read(lambda s: known_rails(s, actor=actor))

    async def flag_detail(self, actor: User, *, flag_id: int) -> FlagDetail:
        return await self.db.run_read(lambda s: load_flag_detail(s, actor=actor, flag_id=flag_id))

    async def audit(
        self, actor: User, *, filters: AuditFilter, before: tuple[datetime, int] | None, limit: int
    ) -> AuditPage:
        return await self.db.run_read(lambda s: list_audit(s, actor=actor, filters=filters, before=before, limit=limit))

    async def stats(self, actor: User, *, since: datetime, until: datetime) -> ModerationStats:
        return await self.db.run_read(lambda s: moderation_stats(s, actor=actor, since=since, until=until))

    async def rail_weeks(self, actor: User, *, since: datetime, until: datetime) -> list[RailWeek]:
        return await self.db.run_read(lambda s: rail_weeks(s, actor=actor, since=since, until=until))

    async def threshold_points(
        self, actor: User, *, rail: str, thresholds: Iterable[float], since: datetime, until: datetime
    ) -> list[ThresholdPoint]:
        return await self.db.run_read(
            lambda s: threshold_points(s, actor=actor, rail=rail, thresholds=thresholds, since=since, until=until)
        )

    async def export(self, actor: User, *, filters: QueueFilter, sort: str, fmt: str, max_flags: int) -> FlagExport:
        """The audited export; its body streams page by page in its own read transactions."""
        return await asyncio.to_thread(
            start_export, self.db, actor=actor, filters=filters, sort=sort, fmt=fmt, max_flags=max_flags
        )

    # --- actions (each one audited) ---------------------------------------------------------------------

    async def act_on_flag(
        self, actor: User, *, flag_id: int, action: str, note: str, expected_version: int | None
    ) -> None:
        await self.db.run_write(
            lambda s: act_on_flag(
                s, actor=actor, flag_id=flag_id, action=action, note=note, expected_version=expected_version
            )
        )

    async def act_on_flags(
        self, actor: User, *, flag_ids: list[int], action: str, note: str, expected_versions: Mapping[int, int]
    ) -> BulkOutcome:
        return await self.db.run_write(
            lambda s: act_on_flags(
                s, actor=actor, flag_ids=flag_ids, action=action, note=note, expected_versions=expected_versions
            )
        )

    async def ban_author(self, actor: User, *, flag_id: int, note: str) -> str:
        """Ban the author of a flagged turn; returns their username."""
        detail = await self.flag_detail(actor, flag_id=flag_id)
        await self.db.run_write(lambda s: ban_user(s, actor=actor, user_id=detail.user_id, note=note, flag_id=flag_id))
        return detail.username

    async def unban_author(self, actor: User, *, flag_id: int, note: str) -> str:
        detail = await self.flag_detail(actor, flag_id=flag_id)
        await self.db.run_write(
            lambda s: unban_user(s, actor=actor, user_id=detail.user_id, note=note, flag_id=flag_id)
        )
        return detail.username
