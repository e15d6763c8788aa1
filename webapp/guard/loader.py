"""Load rails/ into NeMo Guardrails, adapted to the settings, with every rail action made fail-closed."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.actions.rail_outcome import RailOutcome
from nemoguardrails.context import llm_call_info_var
from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter
from nemoguardrails.llm.frameworks import get_default_framework, get_framework
from nemoguardrails.rails.llm.config import Model
from nemoguardrails.rails.llm.utils import get_action_details_from_flow_id

from webapp.guard.classifier import ToxicityClassifier
from webapp.guard.corroboration import UNGATED, RuleGate
from webapp.guard.injection import InjectionDetector
from webapp.guard.recorder import ActionRecord, active_recorder
from webapp.guard.safety import SafetyModels, Thresholds
from webapp.guard.verdict import ModelCall
from webapp.llm.registry import create_chat_model
from webapp.settings import Settings

ENGINE = "guardchat"
SELF_CHECK_FLOWS = ("self check input", "self check output")
CONTENT_SAFETY_MODEL_TYPE = "content_safety"
CONTENT_SAFETY_INPUT_FLOW = f"content safety check input $model={CONTENT_SAFETY_MODEL_TYPE}"
CONTENT_SAFETY_OUTPUT_FLOW = f"content safety check output $model={CONTENT_SAFETY_MODEL_TYPE}"
# Every action a rail runs; each is wrapped so that a crash, a timeout or an unreachable model blocks.
RAIL_ACTIONS = (
    "check_abuse",
    "check_jailbreak",
    "check_harmful_request",
    "check_request_safety",
    "check_conversation",
    "check_language",
    "check_reply_safety",
    "neutralise_markup",
    "self_check_input",
    "self_check_output",
    "content_safety_check_input",
    "content_safety_check_output",
)


class RailsConfigError(RuntimeError):
    """rails/ could not be loaded."""


class GuardChatLLMAdapter(LangChainLLMAdapter):
    """NeMo's LangChain adapter, speaking GuardChat's sampling parameter names.

    NeMo's rails ask for ``max_tokens`` (e.g. 3 tokens for a self-check answer); GuardChat chat models take
    ``max_new_tokens``.
    """

    def _prepare_call_params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = super()._prepare_call_params(stop, kwargs)
        if "max_tokens" in params:
            params["max_new_tokens"] = params.pop("max_tokens")
        return params


def describe_failure(exc: BaseException) -> str:
    inner = getattr(exc, "inner_exception", None)
    if isinstance(inner, BaseException):
        exc = inner
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _model_call(started: float) -> tuple[ModelCall, ...]:
    info = llm_call_info_var.get()
    if info is None or info.completion is None:
        return ()
    duration = info.duration if info.duration is not None else time.perf_counter() - started
    return (
        ModelCall(
            task=info.task or "",
            prompt=info.prompt or "",
            completion=info.completion,
            duration_ms=duration * 1000,
        ),
    )


def fail_closed(
    fn: Callable[..., Any], action_name: str, timeout_s: float, inject: dict[str, Any] | None = None
) -> Callable[..., Any]:
    """Wrap a rail action: raising, timing out or not returning a RailOutcome becomes a failed BLOCK.

    NeMo itself turns most action exceptions into an internal-error stop, but lets model-call failures
    (LLMCallException) escape from generate_async, and has no per-rail timeout. Here both block the turn
    inside the rail that failed, so NeMo names that rail. ``inject`` supplies GuardChat's configured
    detectors (NeMo passes actions only the parameters their flow names). The outcome is also
    written to the active RailRecorder, with its duration and model call.
    """

    @functools.wraps(fn)
    async def guarded(*args: Any, **kwargs: Any) -> RailOutcome:
        started = time.perf_counter()
        llm_call_info_var.set(None)  # so a model call seen below is this action's own
        try:
            async with asyncio.timeout(timeout_s):
                result = fn(*args, **{**kwargs, **(inject or {})})
                if inspect.isawaitable(result):
                    result = await result
            if not isinstance(result, RailOutcome):
                result = RailOutcome.failure(reason=f"{action_name} returned {type(result).__name__}, not a verdict")
        except TimeoutError:
            result = RailOutcome.failure(reason=f"{action_name} did not finish within {timeout_s:g} s")
        except Exception as exc:
            result = RailOutcome.failure(reason=f"{action_name} failed: {describe_failure(exc)}")
        recorder = active_recorder.get()
        if recorder is not None:
            recorder.add(
                ActionRecord(
                    action=action_name,
                    outcome=result,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    model_calls=_model_call(started),
                )
            )
        return result

    return guarded


def _register_engine(settings: Settings) -> None:
    """`engine: guardchat` models in the rails config are built through GuardChat's chat-model registry."""

    def provider(model: str, **_: Any) -> GuardChatLLMAdapter:
        return GuardChatLLMAdapter(create_chat_model(settings, model_name=model))

    framework = get_framework(get_default_framework())
    framework.register_provider(ENGINE, provider)


def build_config(settings: Settings) -> RailsConfig:
    rails_dir = settings.rails_dir
    if not (rails_dir / "config.yml").is_file():
        raise RailsConfigError(
            f"no rails configuration at {rails_dir.resolve()}/config.yml; set GUARDCHAT_RAILS_DIR to the "
            "project's rails/ directory"
        )
    config = RailsConfig.from_path(str(rails_dir))
    if config.colang_version != "1.0":
        raise RailsConfigError(f"rails/ must use Colang 1.0 (activated-rails logs); got {config.colang_version}")

    input_flows = list(config.rails.input.flows)
    output_flows = list(config.rails.output.flows)
    if not settings.self_check_enabled:
        input_flows = [f for f in input_flows if f not in SELF_CHECK_FLOWS]
        output_flows = [f for f in output_flows if f not in SELF_CHECK_FLOWS]
    elif settings.triton_guard_model:
        for model_type in ("self_check_input", "self_check_output"):
            config.models.append(Model(type=model_type, engine=ENGINE, model=settings.triton_guard_model))
    if settings.content_safety_model:
        config.models.append(Model(type=CONTENT_SAFETY_MODEL_TYPE, engine=ENGINE, model=settings.content_safety_model))
        input_flows.append(CONTENT_SAFETY_INPUT_FLOW)
        output_flows.append(CONTENT_SAFETY_OUTPUT_FLOW)
    config.rails.input.flows = input_flows
    config.rails.output.flows = output_flows

    config.bot_messages["refuse to respond"] = [settings.refusal_input]
    return config


LEARNED_ACTIONS = ("check_request_safety", "check_conversation", "check_language", "check_reply_safety")
# The word rules whose input blocks the learned request rail must corroborate (webapp/guard/corroboration.py).
# Without the learned rails in the configuration they block alone.
GATED_RULE_ACTIONS = ("check_abuse", "check_jailbreak", "check_harmful_request")


def build_safety_models(settings: Settings, abuse: ToxicityClassifier, injection: InjectionDetector) -> SafetyModels:
    """The learned rails' models (rails/models/*.npz over the packaged sentence encoder)."""
    return SafetyModels(
        models_dir=settings.rails_dir / "models",
        thresholds=Thresholds(
            harmful_request=settings.harmful_request_threshold,
            jailbreak=settings.jailbreak_threshold,
            harmful_reply=settings.harmful_reply_threshold,
        ),
        block_unsupported_languages=settings.block_unsupported_languages,
        abuse=abuse,
        injection=injection,
    )


@dataclass(frozen=True)
class LoadedRails:
    rails: LLMRails
    chat_model: BaseChatModel
    abuse_classifier: ToxicityClassifier
    input_flows: tuple[str, ...]
    output_flows: tuple[str, ...]
    flow_actions: dict[str, str]  # rail flow -> the action that decides it


def load_rails(settings: Settings) -> LoadedRails:
    """Build the LLMRails for these settings. Costly (parses Colang, loads the classifier): do it once."""
    # NeMo Guardrails reports usage over the network unless told not to; GuardChat runs offline.
    os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
    config = build_config(settings)
    _register_engine(settings)
    chat_model = create_chat_model(settings)
    rails = LLMRails(config, llm=GuardChatLLMAdapter(chat_model))

    classifier = ToxicityClassifier(settings.toxicity_threshold)
    detector = InjectionDetector(recheck=lambda text: classifier.classify(text).reason)
    inject: dict[str, dict[str, Any]] = {
        "check_abuse": {"abuse_classifier": classifier, "rule_gate": UNGATED, "reply_gate": UNGATED},
        "check_jailbreak": {"injection_detector": detector, "rule_gate": UNGATED},
        "check_harmful_request": {"rule_gate": UNGATED},
    }
    dispatcher = rails.runtime.action_dispatcher
    flow_actions = {
        flow: get_action_details_from_flow_id(flow, rails.config.flows)[0]
        for flow in (*config.rails.input.flows, *config.rails.output.flows)
    }
    if set(LEARNED_ACTIONS) & set(flow_actions.values()):
        # Loaded now, not in the first turn: a missing model stops start-up with its package and file named.
        safety = build_safety_models(settings, classifier, detector)
        inject.update({name: {"safety_models": safety} for name in LEARNED_ACTIONS})
        gate = RuleGate(safety, settings.rule_corroboration_threshold)
        for name in GATED_RULE_ACTIONS:
            inject[name]["rule_gate"] = gate
        inject["check_abuse"]["reply_gate"] = RuleGate(safety, settings.output_rule_corroboration_threshold, "reply")

    for name in RAIL_ACTIONS:
        action = dispatcher.get_action(name)
        if action is None:
            continue  # the action's flow is not used in this configuration
        rails.register_action(fail_closed(action, name, settings.rail_timeout_s, inject.get(name)), name=name)
    return LoadedRails(
        rails=rails,
        chat_model=chat_model,
        abuse_classifier=classifier,
        input_flows=tuple(config.rails.input.flows),
        output_flows=tuple(config.rails.output.flows),
        flow_actions=flow_actions,
    )
