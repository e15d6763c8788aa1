"""Run rails through NeMo Guardrails and turn what they decided into RailChecks.

- ``run("input")``: each input rail's action through NeMo's action dispatcher, the way NeMo's streaming engine
  runs output rails (parallel when ``rails.input.parallel``; the first block cancels the rest). Every input
  flow is ``execute <action>``, then refuse and stop if its RailOutcome is blocked, so the outcome decides
  exactly what the flow would. ``generate_async`` would interpret those flows with NeMo's Colang runtime
  instead: a runtime per parallel flow, re-evaluating every flow on every event, a third of a turn's CPU
  (profiled with bench/, see bench/RESULTS.md).
- ``run("output")``: ``LLMRails.generate_async`` with only the output rails switched on. Dialog rails and
  generation are off, so NeMo never prompts the main model. The decision is read from
  ``response.log.activated_rails`` (the flow name and its ``stop`` flag).
- ``stream_output``: ``LLMRails.stream_async(generator=...)``, NeMo's streaming output-rails engine applied to
  our own token stream. It checks each chunk (chunk_size tokens incl. context_size tokens of the previous
  one) before releasing its tokens, and on a block ends with a JSON message naming the flow. It keeps no
  log, which is why the per-action RailRecorder exists.
Reasons, scores, durations and model calls come from the RailOutcome each rail action returned, as recorded
by the fail-closed wrapper (webapp/guard/loader.py).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nemoguardrails import LLMRails
from nemoguardrails.actions.rail_outcome import RailOutcome
from nemoguardrails.colang.v1_0.runtime.flows import _get_flow_params
from nemoguardrails.rails.llm.options import ActivatedRail, GenerationResponse
from nemoguardrails.rails.llm.utils import get_action_details_from_flow_id

from webapp.guard.loader import describe_failure
from webapp.guard.recorder import ActionRecord, RailRecorder, active_recorder
from webapp.guard.verdict import ModelCall, RailCheck, Stage

_ENGINE_RAIL = {"input": "input rails", "output": "output rails"}


@dataclass(frozen=True)
class StageResult:
    """What one stage of rails decided about one text (or one streamed reply so far)."""

    stage: Stage
    checks: tuple[RailCheck, ...]
    model_calls: tuple[ModelCall, ...]
    blocking: RailCheck | None = None
    failed: bool = False  # the blocking rail could not decide (crash, timeout, unreachable model)
    content: str = ""  # the text after the rails (output rails may rewrite it)

    @property
    def blocked(self) -> bool:
        return self.blocking is not None


@dataclass(frozen=True)
class StreamBlocked:
    """NeMo's streaming engine stopped the reply: ``flow`` is the rail it names."""

    flow: str
    internal_error: bool
    message: str


def _engine_failure(stage: Stage, reason: str, elapsed_ms: float) -> StageResult:
    check = RailCheck(
        name=_ENGINE_RAIL[stage], stage=stage, duration_ms=elapsed_ms, blocked=True, reason=reason, score=None
    )
    return StageResult(stage=stage, checks=(check,), model_calls=(), blocking=check, failed=True)


def _score(outcome: RailOutcome | None) -> float | None:
    value = outcome.metadata.get("score") if outcome is not None else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _reason(record: ActionRecord) -> str | None:
    """The rail's own reason; for a model-judged rail without one, the model's answer."""
    if record.outcome.reason:
        return record.outcome.reason
    for call in record.model_calls:
        return f'{call.task or record.action}: the guard model answered "{call.completion.strip()[:80]}"'
    return None


def _logged_outcome(rail: ActivatedRail) -> RailOutcome | None:
    for executed in reversed(rail.executed_actions):
        if isinstance(executed.return_value, RailOutcome):
            return executed.return_value
    return None


def parse_block(chunk: str) -> StreamBlocked | None:
    """NeMo's streaming block message: {"error": {"param": <flow>, "code": ..., "type": ...}}."""
    if not chunk.startswith("{"):
        return None
    try:
        data = json.loads(chunk)
    except json.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or "param" not in error:
        return None
    return StreamBlocked(
        flow=str(error["param"]),
        internal_error=error.get("type") == "internal_error" or error.get("code") == "rail_execution_failure",
        message=str(error.get("message", "")),
    )


class RailsRunner:
    """Never raises for a rail failure: NeMo errors and timeouts become a failed block (fail closed)."""

    def __init__(
        self,
        rails: LLMRails,
        *,
        rail_timeout_s: float,
        flows: Mapping[Stage, Sequence[str]],
        flow_actions: Mapping[str, str],
    ) -> None:
        self._rails = rails
        self._flows = flows
        self._flow_actions = flow_actions
        # Each rail action has its own rail_timeout_s; this backstop is for the engine itself.
        self._backstop_s = {stage: rail_timeout_s * max(len(f), 1) + 1.0 for stage, f in flows.items()}

    def has_rails(self, stage: Stage) -> bool:
        return bool(self._flows.get(stage))

    def checks_from_records(self, stage: Stage, recorder: RailRecorder) -> tuple[RailCheck, ...]:
        """One RailCheck per configured flow of ``stage`` that ran, summed over its recorded actions."""
        checks = []
        for flow in self._flows.get(stage, ()):
            records = recorder.for_action(self._flow_actions.get(flow, ""))
            if not records:
                continue
            blocking = next((r for r in records if r.outcome.is_blocked), None)
            reasons = [r.outcome.reason for r in records if r.outcome.reason]
            scores = [s for s in (_score(r.outcome) for r in records) if s is not None]
            checks.append(
                RailCheck(
                    name=flow,
                    stage=stage,
                    duration_ms=sum(r.duration_ms for r in records),
                    blocked=blocking is not None,
                    reason=_reason(blocking) if blocking is not None else (reasons[-1] if reasons else None),
                    score=max(scores) if scores else None,
                )
            )
        return tuple(checks)

    def _from_log(self, response: GenerationResponse, stage: Stage, recorder: RailRecorder) -> StageResult:
        if response.log is None:
            raise RuntimeError("NeMo Guardrails returned no log although activated_rails logging was requested")
        recorded = {c.name: c for c in self.checks_from_records(stage, recorder)}
        checks: list[RailCheck] = []
        blocking: RailCheck | None = None
        failed = False
        for rail in response.log.activated_rails:
            if rail.type != stage:
                continue
            outcome = _logged_outcome(rail)
            seen = recorded.get(rail.name)
            failed_here = rail.stop and (outcome is None or outcome.failed)
            if outcome is not None and outcome.reason:
                reason: str | None = outcome.reason
            elif seen is not None and seen.reason:
                reason = seen.reason
            elif failed_here:
                reason = f"{rail.name} could not run (internal error in NeMo Guardrails)"
            else:
                reason = None
            check = RailCheck(
                name=rail.name,
                stage=stage,
                duration_ms=seen.duration_ms if seen is not None else (rail.duration or 0.0) * 1000,
                blocked=rail.stop,
                reason=reason,
                score=_score(outcome),
            )
            checks.append(check)
            if rail.stop and blocking is None:
                blocking, failed = check, failed_here
        content = ""
        if isinstance(response.response, list) and response.response:
            content = str(response.response[-1].get("content", ""))
        calls = tuple(call for record in recorder.records for call in record.model_calls)
        return StageResult(
            stage=stage, checks=tuple(checks), model_calls=calls, blocking=blocking, failed=failed, content=content
        )

    async def run(self, stage: Stage, *, user_text: str, bot_text: str | None = None) -> StageResult:
        """Run all rails of ``stage`` on one text."""
        if not self.has_rails(stage):
            return StageResult(stage=stage, checks=(), model_calls=(), content=bot_text or user_text)

        async def generate() -> StageResult:
            recorder = RailRecorder()
            active_recorder.set(recorder)  # this task's own context: concurrent turns do not mix
            if stage == "input":
                return await self._run_input_actions(user_text, recorder)
            return await self._run_output_flows(user_text, bot_text or "", recorder)

        started = time.perf_counter()
        try:
            return await asyncio.wait_for(generate(), timeout=self._backstop_s[stage])
        except TimeoutError:
            reason = f"{stage} rails did not finish within {self._backstop_s[stage]:g} s"
        except Exception as exc:
            reason = f"{stage} rails failed: {describe_failure(exc)}"
        return _engine_failure(stage, reason, (time.perf_counter() - started) * 1000)

    async def _run_output_flows(self, user_text: str, bot_text: str, recorder: RailRecorder) -> StageResult:
        options = {
            "rails": {
                "input": False,
                "output": True,
                "dialog": False,
                "retrieval": False,
                "tool_input": False,
                "tool_output": False,
            },
            "log": {"activated_rails": True},
        }
        messages = [{"role": "user", "content": user_text}, {"role": "assistant", "content": bot_text}]
        # An explicit empty state keeps NeMo from caching every conversation in
        # LLMRails.events_history_cache, which is never evicted.
        response = await self._rails.generate_async(messages=messages, options=options, state={})
        if not isinstance(response, GenerationResponse):
            raise RuntimeError(f"expected a GenerationResponse, got {type(response).__name__}")
        return self._from_log(response, "output", recorder)

    def _action_kwargs(self, flow: str, action: str, params: Mapping[str, Any], user_text: str) -> dict[str, Any]:
        """What NeMo's Colang runtime passes an action (runtime._process_start_action): the flow's own
        parameters with $variables resolved, plus the special and registered parameters it declares."""
        runtime = self._rails.runtime
        context = {
            "user_message": user_text,
            "last_user_message": user_text,
            "triggered_input_rail": flow,
            **_get_flow_params(flow),
        }
        kwargs = {k: context.get(v[1:], v) if isinstance(v, str) and v[:1] == "$" else v for k, v in params.items()}
        fn = runtime.action_dispatcher.get_action(action)
        declared = inspect.signature(fn).parameters if inspect.isfunction(fn) or inspect.ismethod(fn) else {}
        available = {
            "context": context,
            "events": [],
            "config": self._rails.config,
            "llm_task_manager": runtime.llm_task_manager,
            **runtime.registered_action_params,
        }
        kwargs.update({name: value for name, value in available.items() if name in declared})
        if "llm" in kwargs and f"{action}_llm" in runtime.registered_action_params:
            kwargs["llm"] = runtime.registered_action_params[f"{action}_llm"]
        return kwargs

    async def _run_input_actions(self, user_text: str, recorder: RailRecorder) -> StageResult:
        """Every input rail's action; the first outcome that blocks (or no outcome: fail closed) stops the turn."""
        flows = list(self._flows["input"])
        outcomes: dict[str, RailOutcome | None] = {}  # None: the action did not return an outcome

        async def run_flow(flow: str) -> str:
            action, params = get_action_details_from_flow_id(flow, self._rails.config.flows)
            kwargs = self._action_kwargs(flow, action, params, user_text)
            result, status = await self._rails.runtime.action_dispatcher.execute_action(action, kwargs)
            outcomes[flow] = result if status == "success" and isinstance(result, RailOutcome) else None
            return flow

        def stops(flow: str) -> bool:
            outcome = outcomes[flow]
            return outcome is None or outcome.is_blocked

        blocking: str | None = None
        if self._rails.config.rails.input.parallel:
            tasks = [asyncio.create_task(run_flow(flow)) for flow in flows]
            try:
                for done in asyncio.as_completed(tasks):
                    flow = await done
                    if stops(flow):
                        blocking = flow
                        break
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        else:
            for flow in flows:
                if stops(await run_flow(flow)):
                    blocking = flow
                    break

        checks = self.checks_from_records("input", recorder)
        calls = tuple(call for record in recorder.records for call in record.model_calls)
        if blocking is None:
            return StageResult(stage="input", checks=checks, model_calls=calls, content=user_text)
        check = next((c for c in checks if c.name == blocking and c.blocked), None)
        if check is None:  # the action returned nothing NeMo could read as a verdict
            check = RailCheck(
                name=blocking,
                stage="input",
                duration_ms=0.0,
                blocked=True,
                reason=f"{blocking} could not run (internal error in NeMo Guardrails)",
                score=None,
            )
            checks = (*checks, check)
        outcome = outcomes[blocking]
        failed = outcome is None or outcome.failed
        return StageResult(
            stage="input", checks=checks, model_calls=calls, blocking=check, failed=failed, content=user_text
        )

    def stream_output(self, *, user_text: str, tokens: AsyncIterator[str]) -> AsyncIterator[str]:
        """NeMo's streaming output rails over ``tokens``: yields released tokens, then maybe a block message.

        The caller must iterate this with ``active_recorder`` set in its context.
        """
        return self._rails.stream_async(messages=[{"role": "user", "content": user_text}], generator=tokens)

    def streamed_result(self, recorder: RailRecorder, block: StreamBlocked | None, elapsed_ms: float) -> StageResult:
        checks = self.checks_from_records("output", recorder)
        calls = tuple(call for record in recorder.records for call in record.model_calls)
        if block is None:
            return StageResult(stage="output", checks=checks, model_calls=calls)
        blocking = next((c for c in checks if c.name == block.flow and c.blocked), None)
        action = self._flow_actions.get(block.flow, "")
        failed = block.internal_error or any(
            r.outcome.failed for r in recorder.for_action(action) if r.outcome.is_blocked
        )
        if blocking is None:  # NeMo blocked without an outcome from the rail: its action could not run
            blocking = RailCheck(
                name=block.flow,
                stage="output",
                duration_ms=elapsed_ms,
                blocked=True,
                reason=block.message or f"{block.flow} could not run",
                score=None,
            )
            checks = (*checks, blocking)
            failed = True
        return StageResult(stage="output", checks=checks, model_calls=calls, blocking=blocking, failed=failed)
