"""The moderation queue's filter as a form holds it, as a URL query (export links), and as a QueueFilter.

Form values arrive from the browser (or from anyone calling the Gradio API or the export URL), so every
one is checked here and turned into an InvalidInputError that names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

from webapp.moderation.queue import ASSIGNMENTS, QUEUE_SORTS, Assignment, QueueFilter
from webapp.store.errors import InvalidInputError
from webapp.store.models import FLAG_SOURCES, FLAG_STATUSES

ANY = "any"


def _text(value: Any, field: str, limit: int = 200) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be text")
    value = value.strip()
    if len(value) > limit:
        raise InvalidInputError(f"{field} is {len(value)} characters; the limit is {limit}")
    return value


def parse_day(value: Any, field: str) -> date | None:
    text = _text(value, field, 32)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise InvalidInputError(f"{field} {text!r} is not a date; use YYYY-MM-DD") from None


def day_range(since: Any, until: Any, field: str = "date") -> tuple[datetime | None, datetime | None]:
    """Inclusive calendar days (UTC) → [start, end) datetimes."""
    first, last = parse_day(since, f"from {field}"), parse_day(until, f"to {field}")
    start = datetime(first.year, first.month, first.day, tzinfo=UTC) if first else None
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1) if last else None
    if start and end and start >= end:
        raise InvalidInputError(f"the {field} range ends before it starts")
    return start, end


@dataclass(frozen=True)
class QueueForm:
    """What the filter bar holds; ``any`` means no filter on that field."""

    status: str = "open"
    source: str = ANY
    rail: str = ANY
    user: str = ""
    since: str = ""
    until: str = ""
    text: str = ""
    assigned: str = "anyone"
    sort: str = "newest"

    @classmethod
    def from_values(cls, *values: Any) -> QueueForm:
        names = list(cls.__dataclass_fields__)
        if len(values) != len(names):
            raise InvalidInputError(f"the queue filter has {len(names)} fields, got {len(values)}")
        form = cls(**{name: _text(v, name) or getattr(cls, name) for name, v in zip(names, values, strict=True)})
        form.to_filter()  # validate now, naming the bad field
        return form

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> QueueForm:
        return cls.from_values(*(params.get(name, getattr(cls, name)) for name in cls.__dataclass_fields__))

    def to_filter(self) -> QueueFilter:
        if self.status != ANY and self.status not in FLAG_STATUSES:
            raise InvalidInputError(f"unknown status {self.status!r}")
        if self.source != ANY and self.source not in FLAG_SOURCES:
            raise InvalidInputError(f"unknown source {self.source!r}")
        if self.assigned not in ASSIGNMENTS:
            raise InvalidInputError(f"unknown assignment filter {self.assigned!r}")
        if self.sort not in QUEUE_SORTS:
            raise InvalidInputError(f"unknown sort {self.sort!r}")
        since, until = day_range(self.since, self.until)
        return QueueFilter(
            status=None if self.status == ANY else self.status,
            source=None if self.source == ANY else self.source,
            rail=None if self.rail == ANY else self.rail,
            username=self.user,
            since=since,
            until=until,
            text=self.text,
            assignment=cast(Assignment, self.assigned),
        )

    def query_string(self) -> str:
        defaults = QueueForm()
        return urlencode({k: v for k, v in asdict(self).items() if v != getattr(defaults, k)})
