"""Per-check record of what each rail action did: its outcome, how long it took, the model calls it made.

The fail-closed wrapper around every rail action (webapp/guard/loader.py) writes here when a recorder is
active in the current context; webapp/guard/runner.py turns the records into the verdict's RailChecks.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from nemoguardrails.actions.rail_outcome import RailOutcome

from webapp.guard.verdict import ModelCall


@dataclass(frozen=True)
class ActionRecord:
    action: str
    outcome: RailOutcome
    duration_ms: float
    model_calls: tuple[ModelCall, ...] = ()


@dataclass
class RailRecorder:
    records: list[ActionRecord] = field(default_factory=list)

    def add(self, record: ActionRecord) -> None:
        self.records.append(record)

    def for_action(self, action: str) -> list[ActionRecord]:
        return [r for r in self.records if r.action == action]


active_recorder: ContextVar[RailRecorder | None] = ContextVar("guardchat_rail_recorder", default=None)
