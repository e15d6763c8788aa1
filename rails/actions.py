"""Actions behind GuardChat's rails. The detectors live in webapp.guard; these only adapt them to NeMo.

webapp/guard/loader.py wraps these actions (fail closed) and injects the detectors built from its settings
(``abuse_classifier``, ``injection_detector``). When this directory is loaded by plain NeMo tooling instead,
defaults built from the GuardChat settings are used. The harmful-request detector has no settings, so it is
always the default one. NeMo passes rail actions extra parameters (context, config, llm…), hence the ``**_``.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from nemoguardrails.actions import action
from nemoguardrails.actions.rail_outcome import RailOutcome, TransformTarget

from webapp.guard.classifier import ToxicityClassifier
from webapp.guard.conversation import NO_CONTEXT, ConversationContext
from webapp.guard.corroboration import RuleGate
from webapp.guard.harm import HarmfulRequestDetector
from webapp.guard.injection import InjectionDetector
from webapp.guard.markup import describe, neutralise
from webapp.guard.safety import SafetyFinding, SafetyModels
from webapp.settings import get_settings


@lru_cache(maxsize=1)
def _default_classifier() -> ToxicityClassifier:
    return ToxicityClassifier(get_settings().toxicity_threshold)


def _recheck_with(classifier: ToxicityClassifier):  # type: ignore[no-untyped-def]
    def recheck(text: str) -> str | None:
        return classifier.classify(text).reason

    return recheck


@lru_cache(maxsize=1)
def _default_detector() -> InjectionDetector:
    return InjectionDetector(recheck=_recheck_with(_default_classifier()))


async def _gated_block(text: str, reason: str, metadata: dict[str, Any], gate: RuleGate | None) -> RailOutcome:
    """A word rule's block, unless the learned rail behind ``gate`` does not corroborate it."""
    if gate is None:
        gate = _default_gate()
    if gate.active:
        veto = await asyncio.to_thread(gate.veto, text, reason)
        if veto is not None:
            return RailOutcome.allow(reason=veto.describe(), metadata={**metadata, "corroboration": veto.score})
    return RailOutcome.block(reason=reason, metadata=metadata)


@action(name="check_abuse")
async def check_abuse(
    text: str | None = None,
    abuse_classifier: ToxicityClassifier | None = None,
    corroborate: bool = False,
    reply: bool = False,
    rule_gate: RuleGate | None = None,
    reply_gate: RuleGate | None = None,
    **_: Any,
) -> RailOutcome:
    """``corroborate``: the block needs the learned rail's corroboration, see RuleGate; the request rail's
    (``rule_gate``, the input flow) or, with ``reply``, the reply rail's (``reply_gate``, the output flow)."""
    classifier = abuse_classifier or _default_classifier()
    result = classifier.classify(text or "")
    metadata = {"score": result.score}
    if not result.blocked:
        return RailOutcome.allow(metadata=metadata)
    if not corroborate:
        return RailOutcome.block(reason=result.reason, metadata=metadata)
    gate = (reply_gate or _default_reply_gate()) if reply else rule_gate
    return await _gated_block(text or "", result.reason or "abuse", metadata, gate)


@action(name="check_jailbreak")
async def check_jailbreak(
    text: str | None = None,
    injection_detector: InjectionDetector | None = None,
    corroborate: bool = False,
    rule_gate: RuleGate | None = None,
    **_: Any,
) -> RailOutcome:
    """``corroborate`` (the input flow): a rule found in the plain words needs the learned rail's corroboration;
    one found in a decoded payload (base64, rot13, reversed text) blocks alone, see RuleGate."""
    detector = injection_detector or _default_detector()
    finding = detector.detect(text or "")
    if finding is None:
        return RailOutcome.allow(metadata={"score": 0.0})
    metadata = {"score": 1.0, "family": finding.family}
    if not corroborate or not finding.in_plain_text:
        return RailOutcome.block(reason=finding.reason, metadata=metadata)
    return await _gated_block(text or "", finding.reason, metadata, rule_gate)


@lru_cache(maxsize=1)
def _default_harm_detector() -> HarmfulRequestDetector:
    return HarmfulRequestDetector()


@action(name="check_harmful_request")
async def check_harmful_request(
    text: str | None = None,
    harm_detector: HarmfulRequestDetector | None = None,
    rule_gate: RuleGate | None = None,
    **_: Any,
) -> RailOutcome:
    finding = (harm_detector or _default_harm_detector()).detect(text or "")
    if finding is None:
        return RailOutcome.allow(metadata={"score": 0.0})
    return await _gated_block(text or "", finding.reason, {"score": 1.0, "category": finding.category}, rule_gate)


@lru_cache(maxsize=1)
def _default_safety() -> SafetyModels:
    from webapp.guard.loader import build_safety_models

    classifier = _default_classifier()
    return build_safety_models(get_settings(), classifier, _default_detector())


@lru_cache(maxsize=1)
def _default_gate() -> RuleGate:
    return RuleGate(_default_safety(), get_settings().rule_corroboration_threshold)


@lru_cache(maxsize=1)
def _default_reply_gate() -> RuleGate:
    return RuleGate(_default_safety(), get_settings().output_rule_corroboration_threshold, "reply")


def _outcome(finding: SafetyFinding | None, score: float | None = None) -> RailOutcome:
    if finding is not None:
        return RailOutcome.block(
            reason=finding.reason, metadata={"score": finding.score, "category": finding.category, "part": finding.part}
        )
    return RailOutcome.allow(metadata={"score": score} if score is not None else {})


@action(name="check_request_safety")
async def check_request_safety(
    text: str | None = None, safety_models: SafetyModels | None = None, **_: Any
) -> RailOutcome:
    """The learned harmful-request and jailbreak classifier on the new message."""
    models = safety_models or _default_safety()
    if not models.judges_request(text or ""):
        return _outcome(None, 0.0)  # too short to judge: no trip to a worker thread
    # Off the event loop: embedding a text is a few ms of numpy that would stall every other stream.
    return _outcome(*await asyncio.to_thread(models.judge_request, text or ""))


@action(name="check_conversation")
async def check_conversation(
    text: str | None = None,
    conversation: ConversationContext | None = None,
    safety_models: SafetyModels | None = None,
    **_: Any,
) -> RailOutcome:
    """The system prompt, the recent user turns with the new message, and client-sent assistant turns."""
    context = conversation if isinstance(conversation, ConversationContext) else NO_CONTEXT
    if context.empty:
        return RailOutcome.allow()
    models = safety_models or _default_safety()
    return _outcome(await asyncio.to_thread(models.check_conversation, text or "", context))


@action(name="check_language")
async def check_language(text: str | None = None, safety_models: SafetyModels | None = None, **_: Any) -> RailOutcome:
    return _outcome((safety_models or _default_safety()).check_language(text or ""))


@action(name="check_reply_safety")
async def check_reply_safety(
    text: str | None = None, safety_models: SafetyModels | None = None, **_: Any
) -> RailOutcome:
    """The learned harmful-content classifier on the reply (each streamed chunk with its context)."""
    models = safety_models or _default_safety()
    if not models.judges_reply(text or ""):
        # A reply's first chunks are a few words: no trip to a worker thread, which the first token would wait on
        # and which 64 streams' chunks would queue for (the default executor has cores + 4 threads).
        return _outcome(None, 0.0)
    return _outcome(*await asyncio.to_thread(models.judge_reply, text or ""))


@action(name="neutralise_markup")
async def neutralise_markup(text: str | None = None, **_: Any) -> RailOutcome:
    report = neutralise(text or "")
    if not report.changed:
        return RailOutcome.allow()
    return RailOutcome.transform(
        [(TransformTarget.BOT_MESSAGE, report.text)],
        reason=describe(report.findings),
        metadata={"findings": report.findings},
    )
