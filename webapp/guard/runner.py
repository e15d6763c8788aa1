"""Run rails through NeMo Guardrails' action dispatcher and turn what they decided into RailChecks.

Every rail flow in rails/ (and NeMo's library flows we use) is "execute <action>, then refuse and stop if its
RailOutcome blocks", so the outcome decides exactly what the flow would. ``run`` calls each rail's action the
way NeMo's own streaming engine calls output rails (``LLMRails._run_output_rails_in_streaming``): the flow's
parameters resolved, the special parameters the action declares (context, config, llm_task_manager, the
task's model) supplied. Rails of a stage run in parallel when ``rails.<stage>.parallel`` is set; a block
cancels the rails configured after the blocking one and names the first blocking rail in the configured
order. Rails are not interpreted by NeMo's Colang runtime (``generate_async``), which cost a third of a
turn's CPU (a runtime per parallel flow, every flow re-evaluated on every event; profiled with bench/, see
bench/RESULTS.md).

Fail closed: an action that raises, hangs or returns no RailOutcome blocks (webapp/guard/loader.py wraps
every rail action), and an engine failure or the stage's backstop timeout blocks too, naming the stage.
Reasons, scores, durations and model calls come from the RailOutcome each rail action returned, as recorded
by that wrapper.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from nemoguardrails import LLMRails
from nemoguardrails.actions.rail_outcome import RailOutcome
from nemoguardrails.colang.v1_0.runtime.flows import _get_flow_params
from nemoguardrails.rails.llm.utils import get_action_details_from_flow_id

from webapp.guard.conversation import NO_CONTEXT, ConversationContext
from webapp.guard.loader import describe_failure
from webapp.guard.recorder import ActionRecord, RailRecorder, active_recorder
from webapp.guard.verdict import ModelCall, RailCheck, Stage

_ENGINE_RAIL = {"input": "input rails", "output": "output rails"}


@dataclass(frozen=True)
class _FlowPlan:
    """What a rail flow runs: its action and the action's parameters from the flow, and the flow id's own."""

    action: str
    params: Mapping[str, Any]  # read-only: shared by every check of this flow
    flow_params: Mapping[str, Any]


@dataclass(frozen=True)
class StageResult:
    """What one stage of rails decided about one text (or one streamed reply so far)."""

    stage: Stage
    checks: tuple[RailCheck, ...]
    model_calls: tuple[ModelCall, ...]
    blocking: RailCheck | None = None
    failed: bool = False  # the blocking rail could not decide (crash, timeout, unreachable model)

    @property
    def blocked(self) -> bool:
        return self.blocking is not None


def _engine_failure(stage: Stage, reason: str, elapsed_ms: float) -> StageResult:
    check = RailCheck(
        name=_ENGINE_RAIL[stage], stage=stage, duration_ms=elapsed_ms, blocked=True, reason=reason, score=None
    )
    return StageResult(stage=stage, checks=(check,), model_calls=(), blocking=check, failed=True)


async def _first_stop_concurrently(
    flows: Sequence[str], run_flow: Callable[[str], Coroutine[Any, Any, str]], stops: Callable[[str], bool]
) -> str | None:
    """All flows at once, naming the flow that stops the way running them in order would.

    When a flow stops, the flows configured before it are awaited and the first of them that stops is the one
    named; the flows after it are cancelled. Which rail a refusal names (and the reason a moderator reads in
    the queue) therefore does not depend on which rail happened to finish first, and a passing turn still
    waits only for the slowest rail.
    """
    tasks = {flow: asyncio.create_task(run_flow(flow)) for flow in flows}
    try:
        for done in asyncio.as_completed(tasks.values()):
            flow = await done
            if stops(flow):
                for earlier in flows[: flows.index(flow)]:
                    if stops(await tasks[earlier]):
                        return earlier
                return flow
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    return None


async def _first_stop_in_order(
    flows: Sequence[str], run_flow: Callable[[str], Coroutine[Any, Any, str]], stops: Callable[[str], bool]
) -> str | None:
    """One flow after another, in the configured order, until one stops."""
    for flow in flows:
        if stops(await run_flow(flow)):
            return flow
    return None


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
        # What does not change between checks, looked up once: a reply's every chunk runs every output rail.
        self._plans: dict[str, _FlowPlan] = {}
        self._declared: dict[Any, frozenset[str]] = {}

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

    async def run(
        self,
        stage: Stage,
        *,
        user_text: str,
        bot_text: str | None = None,
        conversation: ConversationContext | None = None,
    ) -> StageResult:
        """Run all rails of ``stage`` on one text (and, for input rails, the conversation around it)."""
        if not self.has_rails(stage):
            return StageResult(stage=stage, checks=(), model_calls=())

        recorder = RailRecorder()
        # Set for this check only (reset below): concurrent turns and checks never share a recorder.
        token = active_recorder.set(recorder)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._backstop_s[stage]):
                return await self._run_actions(stage, user_text, bot_text, conversation, recorder)
        except TimeoutError:
            reason = f"{stage} rails did not finish within {self._backstop_s[stage]:g} s"
        except Exception as exc:
            reason = f"{stage} rails failed: {describe_failure(exc)}"
        finally:
            active_recorder.reset(token)
        return _engine_failure(stage, reason, (time.perf_counter() - started) * 1000)

    def _action_kwargs(
        self,
        stage: Stage,
        flow: str,
        action: str,
        params: Mapping[str, Any],
        user_text: str,
        bot_text: str | None,
        conversation: ConversationContext | None,
    ) -> dict[str, Any]:
        """What NeMo passes a rail action (Colang runtime ``_process_start_action``; streaming engine
        ``_prepare_params``): the flow's own parameters with $variables resolved, plus the special and
        registered parameters it declares."""
        runtime = self._rails.runtime
        context: dict[str, Any] = {"user_message": user_text, "last_user_message": user_text}
        if stage == "input":
            context.update(triggered_input_rail=flow, conversation=conversation or NO_CONTEXT)
        else:
            context.update(bot_message=bot_text or "", last_bot_message=bot_text or "", triggered_output_rail=flow)
        context.update(self._plan(flow).flow_params)
        kwargs = {k: context.get(v[1:], v) if isinstance(v, str) and v[:1] == "$" else v for k, v in params.items()}
        declared = self._declared_params(runtime.action_dispatcher.get_action(action))
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

    def _plan(self, flow: str) -> _FlowPlan:
        """``flow``'s action, its parameters and the parameters in its id, read from the config once."""
        plan = self._plans.get(flow)
        if plan is None:
            action, params = get_action_details_from_flow_id(flow, self._rails.config.flows)
            flow_params = MappingProxyType(_get_flow_params(flow))
            plan = self._plans[flow] = _FlowPlan(action, MappingProxyType(params), flow_params)
        return plan

    def _declared_params(self, fn: Any) -> Collection[str]:
        """The parameter names a rail action function declares (none for other callables), per function."""
        if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
            return frozenset()
        try:
            return self._declared[fn]
        except KeyError:
            declared = self._declared[fn] = frozenset(inspect.signature(fn).parameters)
            return declared
        except TypeError:  # an unhashable callable: read its signature each time
            return inspect.signature(fn).parameters

    def _parallel(self, stage: Stage) -> bool:
        rails = self._rails.config.rails
        return bool((rails.input if stage == "input" else rails.output).parallel)

    async def _run_actions(
        self,
        stage: Stage,
        user_text: str,
        bot_text: str | None,
        conversation: ConversationContext | None,
        recorder: RailRecorder,
    ) -> StageResult:
        """Every rail action of ``stage``; the first outcome that blocks (or no outcome: fail closed) stops."""
        flows = list(self._flows[stage])
        outcomes: dict[str, RailOutcome | None] = {}  # None: the action did not return an outcome

        async def run_flow(flow: str) -> str:
            plan = self._plan(flow)
            kwargs = self._action_kwargs(stage, flow, plan.action, plan.params, user_text, bot_text, conversation)
            action = plan.action
            result, status = await self._rails.runtime.action_dispatcher.execute_action(action, kwargs)
            outcomes[flow] = result if status == "success" and isinstance(result, RailOutcome) else None
            return flow

        def stops(flow: str) -> bool:
            outcome = outcomes[flow]
            return outcome is None or outcome.is_blocked

        if self._parallel(stage) and len(flows) > 1:
            blocking = await _first_stop_concurrently(flows, run_flow, stops)
        else:
            blocking = await _first_stop_in_order(flows, run_flow, stops)

        checks = self.checks_from_records(stage, recorder)
        calls = tuple(call for record in recorder.records for call in record.model_calls)
        if blocking is None:
            return StageResult(stage=stage, checks=checks, model_calls=calls)
        check = next((c for c in checks if c.name == blocking and c.blocked), None)
        if check is None:  # the action returned nothing NeMo could read as a verdict
            check = RailCheck(
                name=blocking,
                stage=stage,
                duration_ms=0.0,
                blocked=True,
                reason=f"{blocking} could not run (internal error in NeMo Guardrails)",
                score=None,
            )
            checks = (*checks, check)
        outcome = outcomes[blocking]
        failed = outcome is None or outcome.failed
        return StageResult(stage=stage, checks=checks, model_calls=calls, blocking=check, failed=failed)
