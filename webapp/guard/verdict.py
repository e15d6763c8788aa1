"""What the rails decided about one turn, in a shape that is stored on the message and shown to moderators."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

Stage = Literal["input", "output"]
VerdictStage = Literal["input", "output", "error"]
_STAGES = ("input", "output")
_VERDICT_STAGES = ("input", "output", "error")


class VerdictFormatError(ValueError):
    """A stored verdict could not be read back."""


@dataclass(frozen=True)
class RailCheck:
    """One rail's part in a turn (summed over the chunks of a streamed reply)."""

    name: str
    stage: Stage
    duration_ms: float
    blocked: bool
    reason: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class ModelCall:
    """A call a rail made to a model (self check, content safety), with the model's answer."""

    task: str
    prompt: str
    completion: str
    duration_ms: float


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    stage: VerdictStage | None
    rail: str | None
    reason: str | None
    score: float | None
    checks: tuple[RailCheck, ...] = ()
    model_calls: tuple[ModelCall, ...] = ()
    duration_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.allowed and self.stage is not None:
            raise ValueError("an allowed verdict has no blocking stage")
        if not self.allowed and self.stage is None:
            raise ValueError("a blocked verdict needs the stage that blocked it")

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "stage": self.stage,
            "rail": self.rail,
            "reason": self.reason,
            "score": self.score,
            "duration_ms": round(self.duration_ms, 3),
            "checks": [
                {
                    "name": c.name,
                    "stage": c.stage,
                    "duration_ms": round(c.duration_ms, 3),
                    "blocked": c.blocked,
                    "reason": c.reason,
                    "score": c.score,
                }
                for c in self.checks
            ],
            "model_calls": [
                {
                    "task": m.task,
                    "prompt": m.prompt,
                    "completion": m.completion,
                    "duration_ms": round(m.duration_ms, 3),
                }
                for m in self.model_calls
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        try:
            stage = data["stage"]
            if stage is not None and stage not in _VERDICT_STAGES:
                raise VerdictFormatError(f"unknown verdict stage {stage!r}")
            checks = []
            for c in data.get("checks", ()):
                if c["stage"] not in _STAGES:
                    raise VerdictFormatError(f"unknown rail stage {c['stage']!r}")
                checks.append(
                    RailCheck(
                        name=str(c["name"]),
                        stage=cast(Stage, c["stage"]),
                        duration_ms=float(c["duration_ms"]),
                        blocked=bool(c["blocked"]),
                        reason=c.get("reason"),
                        score=None if c.get("score") is None else float(c["score"]),
                    )
                )
            calls = tuple(
                ModelCall(
                    task=str(m["task"]),
                    prompt=str(m["prompt"]),
                    completion=str(m["completion"]),
                    duration_ms=float(m["duration_ms"]),
                )
                for m in data.get("model_calls", ())
            )
            return cls(
                allowed=bool(data["allowed"]),
                stage=stage,
                rail=data.get("rail"),
                reason=data.get("reason"),
                score=None if data.get("score") is None else float(data["score"]),
                checks=tuple(checks),
                model_calls=calls,
                duration_ms=float(data.get("duration_ms", 0.0)),
            )
        except VerdictFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise VerdictFormatError(f"stored verdict is malformed: {exc!r}") from exc


def merge_checks(checks: list[RailCheck]) -> tuple[RailCheck, ...]:
    """One entry per (stage, rail): durations add up over chunks, a block wins, the highest score is kept."""
    merged: dict[tuple[str, str], RailCheck] = {}
    for check in checks:
        key = (check.stage, check.name)
        seen = merged.get(key)
        if seen is None:
            merged[key] = check
            continue
        scores = [s for s in (seen.score, check.score) if s is not None]
        blocked = seen.blocked or check.blocked
        reason = check.reason if check.blocked else seen.reason if seen.blocked else check.reason or seen.reason
        merged[key] = RailCheck(
            name=check.name,
            stage=check.stage,
            duration_ms=seen.duration_ms + check.duration_ms,
            blocked=blocked,
            reason=reason,
            score=max(scores) if scores else None,
        )
    return tuple(merged.values())


def checks_of(verdict: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The rail checks of a stored or live verdict: name, stage, duration, blocked, reason."""
    return rail_checks(verdict.get("checks")) if verdict else []


def rail_checks(checks: Any) -> list[Mapping[str, Any]]:
    """The well-formed entries of a verdict's stored ``checks`` value."""
    return [c for c in checks if isinstance(c, Mapping)] if isinstance(checks, list) else []
