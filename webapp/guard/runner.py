"""Run one stage of NeMo Guardrails rails on one text, and read the outcome from NeMo's activated-rails log.

Only rails run here: dialog rails and generation are switched off in the generation options, so NeMo never
prompts the main model itself. Which rail blocked, why, and with what score come from
``response.log.activated_rails`` (the flow name, its ``stop`` flag, and the RailOutcome its action returned),
never from the refusal text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from nemoguardrails import LLMRails
from nemoguardrails.actions.rail_outcome import RailOutcome
from nemoguardrails.rails.llm.options import ActivatedRail, GenerationResponse

from webapp.guard.loader import describe_failure
from webapp.guard.verdict import ModelCall, RailCheck, Stage

_ENGINE_RAIL = {"input": "input rails", "output": "output rails"}


@dataclass(frozen=True)
class StageResult:
    """What one stage of rails decided about one text."""

    stage: Stage
    checks: tuple[RailCheck, ...]
    model_calls: tuple[ModelCall, ...]
    blocking: RailCheck | None = None
    failed: bool = False  # the blocking rail could not decide (crash, timeout, unreachable model)
    content: str = ""  # the text after the rails (output rails may rewrite it)
    duration_ms: float = 0.0

    @property
    def blocked(self) -> bool:
        return self.blocking is not None


def _outcome(rail: ActivatedRail) -> RailOutcome | None:
    for executed in reversed(rail.executed_actions):
        if isinstance(executed.return_value, RailOutcome):
            return executed.return_value
    return None


def _score(outcome: RailOutcome | None) -> float | None:
    value = outcome.metadata.get("score") if outcome is not None else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _duration_ms(rail: ActivatedRail) -> float:
    if rail.duration is not None:
        return rail.duration * 1000
    return sum((a.duration or 0.0) for a in rail.executed_actions) * 1000


def read_log(response: GenerationResponse, stage: Stage, duration_ms: float) -> StageResult:
    if response.log is None:
        raise RuntimeError("NeMo Guardrails returned no log although activated_rails logging was requested")
    checks: list[RailCheck] = []
    calls: list[ModelCall] = []
    blocking: RailCheck | None = None
    failed = False
    for rail in response.log.activated_rails:
        if rail.type != stage:
            continue
        outcome = _outcome(rail)
        if rail.stop and (outcome is None or outcome.failed):
            reason = (
                outcome.reason
                if outcome is not None and outcome.reason
                else f"{rail.name} could not run (internal error in NeMo Guardrails)"
            )
        else:
            reason = outcome.reason if outcome is not None else None
        check = RailCheck(
            name=rail.name,
            stage=stage,
            duration_ms=_duration_ms(rail),
            blocked=rail.stop,
            reason=reason,
            score=_score(outcome),
        )
        checks.append(check)
        if rail.stop and blocking is None:
            blocking = check
            failed = outcome is None or outcome.failed
        for executed in rail.executed_actions:
            calls.extend(
                ModelCall(
                    task=call.task or executed.action_name,
                    prompt=call.prompt or "",
                    completion=call.completion or "",
                    duration_ms=(call.duration or 0.0) * 1000,
                )
                for call in executed.llm_calls
            )
    content = ""
    if isinstance(response.response, list) and response.response:
        content = str(response.response[-1].get("content", ""))
    return StageResult(
        stage=stage,
        checks=tuple(checks),
        model_calls=tuple(calls),
        blocking=blocking,
        failed=failed,
        content=content,
        duration_ms=duration_ms,
    )


class RailsRunner:
    """Runs input or output rails through ``LLMRails.generate_async`` and returns a StageResult.

    Never raises for a rail failure: NeMo errors and an overall timeout become a failed block (fail closed).
    """

    def __init__(self, rails: LLMRails, *, rail_timeout_s: float, flows: dict[Stage, Sequence[str]]) -> None:
        self._rails = rails
        self._flows = flows
        # Rails of a stage run in parallel, each under its own rail_timeout_s; this is only a backstop for the
        # engine itself (e.g. if rails are configured to run one after another).
        self._backstop_s = {stage: rail_timeout_s * max(len(f), 1) + 1.0 for stage, f in flows.items()}

    def has_rails(self, stage: Stage) -> bool:
        return bool(self._flows.get(stage))

    async def run(self, stage: Stage, *, user_text: str, bot_text: str | None = None) -> StageResult:
        if not self.has_rails(stage):
            return StageResult(stage=stage, checks=(), model_calls=(), content=bot_text or user_text)
        messages: list[dict[str, str]] = [{"role": "user", "content": user_text}]
        if stage == "output":
            messages.append({"role": "assistant", "content": bot_text or ""})
        options = {
            "rails": {
                "input": stage == "input",
                "output": stage == "output",
                "dialog": False,
                "retrieval": False,
                "tool_input": False,
                "tool_output": False,
            },
            "log": {"activated_rails": True, "llm_calls": True},
        }
        started = time.perf_counter()
        try:
            # An explicit empty state keeps NeMo from caching every conversation in
            # LLMRails.events_history_cache, which is never evicted.
            response = await asyncio.wait_for(
                self._rails.generate_async(messages=messages, options=options, state={}),
                timeout=self._backstop_s[stage],
            )
            if not isinstance(response, GenerationResponse):
                raise RuntimeError(f"expected a GenerationResponse, got {type(response).__name__}")
            return read_log(response, stage, (time.perf_counter() - started) * 1000)
        except TimeoutError:
            reason = f"{stage} rails did not finish within {self._backstop_s[stage]:g} s"
        except Exception as exc:
            reason = f"{stage} rails failed: {describe_failure(exc)}"
        elapsed = (time.perf_counter() - started) * 1000
        check = RailCheck(
            name=_ENGINE_RAIL[stage], stage=stage, duration_ms=elapsed, blocked=True, reason=reason, score=None
        )
        return StageResult(
            stage=stage, checks=(check,), model_calls=(), blocking=check, failed=True, duration_ms=elapsed
        )
