"""Per-turn record of what each rail action did: its outcome, how long it took, the model calls it made.

NeMo Guardrails decides which rail blocked (the activated-rails log, or the streaming engine's block
message, both naming the flow). This record adds what those lack: in parallel mode the log drops the
blocking rail's model calls and timing, and the streaming engine keeps no log at all. The fail-closed
wrapper around every rail action writes here when a recorder is active in the current context.
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
