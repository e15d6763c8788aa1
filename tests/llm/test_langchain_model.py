"""TritonChatModel: LangChain messages → template → budget → client, with per-call overrides."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncGenerator, Sequence

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage

from tests.support.settings import SettingsFactory, make_settings
from tests.support.triton_fixtures import TritonServer
from tests.support.triton_standins import STANDIN_MODELS
from webapp.llm.errors import PromptTooLongError
from webapp.llm.generation import ServerReport
from webapp.llm.langchain_model import TritonChatModel
from webapp.llm.params import GenerationParams
from webapp.llm.registry import TextStreamingModel, create_chat_model
from webapp.llm.tokens import EstimatedTokenCounter
from webapp.llm.triton import TritonChatClient


class ScriptedClient(TritonChatClient):
    """Replaces only the network call: records what the model layer asks for and replies with deltas."""

    def __init__(self, deltas: Sequence[str] = ("Hel", "lo", "!")) -> None:
        super().__init__(url="unused:1", model_name="scripted")
        self.deltas = list(deltas)
        self.calls: list[tuple[str, GenerationParams, list[str]]] = []

    async def stream(
        self, prompt: str, params: GenerationParams, stop: Sequence[str] = (), *, report: ServerReport | None = None
    ) -> AsyncGenerator[str, None]:
        self.calls.append((prompt, params, list(stop)))
        for delta in self.deltas:
            await asyncio.sleep(0)
            yield delta
        if report is not None:
            report.finished = True  # a server that reports nothing else, like NeMo's


def _model(client: ScriptedClient, **overrides: object) -> TritonChatModel:
    settings = make_settings(prompt_template="nemo-chat", triton_model="ppo", **overrides)
    return TritonChatModel.from_settings(settings, client=client)


MESSAGES = [SystemMessage("Be brief."), HumanMessage("Hi"), AIMessage("Hello."), HumanMessage("Bye?")]


async def test_ainvoke_renders_the_template_and_returns_the_reply_with_usage() -> None:
    client = ScriptedClient()
    reply = await _model(client).ainvoke(MESSAGES)
    assert reply.content == "Hello!"
    prompt, params, stop = client.calls[0]
    assert prompt == (
        "<extra_id_0>System\nBe brief.\n<extra_id_1>User\nHi\n<extra_id_1>Assistant\nHello.\n"
        "<extra_id_1>User\nBye?\n<extra_id_1>Assistant\n"
    )
    assert "<extra_id_1>" in stop
    assert params == GenerationParams(temperature=0.7, top_p=0.9, top_k=40, max_new_tokens=512)
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == EstimatedTokenCounter().count(prompt)
    assert reply.response_metadata["dropped_turns"] == 0


async def test_astream_yields_each_delta_then_usage() -> None:
    chunks = [chunk async for chunk in _model(ScriptedClient()).astream(MESSAGES)]
    assert [c.content for c in chunks if c.content] == ["Hel", "lo", "!"]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert isinstance(merged, AIMessageChunk)
    assert merged.content == "Hello!"
    assert merged.usage_metadata is not None and merged.usage_metadata["output_tokens"] > 0


async def test_stream_text_yields_what_astream_does_with_the_callers_sampling() -> None:
    client = ScriptedClient()
    model = _model(client)
    assert isinstance(model, TextStreamingModel)  # so the guarded turn takes this path
    deltas = [d async for d in model.stream_text(MESSAGES, temperature=0.0, top_k=1, max_new_tokens=7)]
    assert deltas == ["Hel", "lo", "!"]
    _, params, _ = client.calls[0]
    assert (params.temperature, params.top_k, params.max_new_tokens) == (0.0, 1, 7)


async def test_bind_overrides_sampling_and_stop_like_nemo_guardrails_does() -> None:
    client = ScriptedClient()
    bound = _model(client).bind(temperature=0.0, top_p=0.5, top_k=1, max_tokens=3, stop=["\nUser:"])
    await bound.ainvoke("Is this safe?")
    _, params, stop = client.calls[0]
    assert params == GenerationParams(temperature=0.0, top_p=0.5, top_k=1, max_new_tokens=3)
    assert "\nUser:" in stop and "<extra_id_1>" in stop


async def test_max_new_tokens_is_capped_by_the_hard_limit() -> None:
    client = ScriptedClient()
    await _model(client, max_output_tokens_limit=64).ainvoke("Hi", max_new_tokens=4000)
    assert client.calls[0][1].max_new_tokens == 64


async def test_unknown_generation_arguments_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match="logit_bias"):
        await _model(ScriptedClient()).ainvoke("Hi", logit_bias={1: 2})


async def test_a_long_history_is_trimmed_to_the_budget() -> None:
    client = ScriptedClient()
    history = [HumanMessage("old question " * 40), AIMessage("old answer " * 40), HumanMessage("new question")]
    model = _model(client, max_input_tokens=128, context_tokens=256)
    reply = await model.ainvoke(history)
    prompt = client.calls[0][0]
    assert "old" not in prompt and "new question" in prompt
    assert reply.response_metadata["dropped_turns"] == 1
    assert client.calls[0][1].max_new_tokens <= 256 - reply.response_metadata["prompt_tokens"]


async def test_a_newest_message_over_budget_raises_before_calling_triton() -> None:
    client = ScriptedClient()
    with pytest.raises(PromptTooLongError, match="too long by"):
        await _model(client, max_input_tokens=128, context_tokens=256).ainvoke("word " * 500)
    assert client.calls == []


async def test_tool_messages_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="'tool' message"):
        await _model(ScriptedClient()).ainvoke([HumanMessage("x"), ToolMessage("y", tool_call_id="1")])


async def test_sync_invoke_inside_a_running_loop_does_not_deadlock() -> None:
    # Sync callers (e.g. a library calling .invoke from async code) run on the model's own loop.
    model = _model(ScriptedClient())
    assert model.invoke("Hi").content == "Hello!"
    assert "".join(str(c.content) for c in model.stream("Hi")) == "Hello!"


def test_the_triton_backend_is_registered_and_shares_one_client_per_model(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(llm_backend="triton", triton_model="smollm2_stream", prompt_template="chatml")
    first = create_chat_model(settings)
    second = create_chat_model(settings)
    other = create_chat_model(settings, model_name="guard")
    assert isinstance(first, TritonChatModel) and isinstance(other, TritonChatModel)
    assert first._llm_type == "guardchat-triton"
    assert first.client is second.client
    assert other.client is not first.client and other.model_name == "guard"


# --- against a real Triton ------------------------------------------------------------------


def _real_model(server: TritonServer, model: str, template: str) -> TritonChatModel:
    settings = make_settings(
        llm_backend="triton", triton_url=server.grpc_url, triton_model=model, prompt_template=template
    )
    chat_model = create_chat_model(settings)
    assert isinstance(chat_model, TritonChatModel)
    return chat_model


@pytest.mark.integration
async def test_ainvoke_and_astream_through_triton_in_the_nemo_dialect(triton_server: TritonServer) -> None:
    model = _real_model(triton_server, "nemo2", "nemo-chat")
    messages = [SystemMessage("Be brief."), HumanMessage("How are you? {{reply:All good, thanks for asking.}}")]
    reply = await model.ainvoke(messages)
    assert reply.content == "All good, thanks for asking."
    chunks = [chunk async for chunk in model.astream(messages)]
    assert "".join(str(c.content) for c in chunks) == "All good, thanks for asking."
    assert len([c for c in chunks if c.content]) > 1
    deltas = [delta async for delta in model.stream_text(messages)]
    assert deltas == [str(c.content) for c in chunks if c.content]
    # what reached Triton is the PPO-Chat prompt, with the template's stop word
    record = triton_server.find_request("nemo2", "How are you?")
    assert record.prompt.startswith("<extra_id_0>System\nBe brief.\n<extra_id_1>User\nHow are you?")
    assert record.prompt.endswith("<extra_id_1>Assistant\n")
    assert record.inputs["stop_words_list"] == "<extra_id_1>"


@pytest.mark.integration
async def test_stop_sequences_passed_by_the_caller_are_honoured(triton_server: TritonServer) -> None:
    model = _real_model(triton_server, "nemo2", "nemo-chat")
    bound = model.bind(stop=["\nUser intent:"], temperature=0.1, max_tokens=40)
    reply = await bound.ainvoke("{{reply:  ask about cats\nUser intent: more}}")
    assert reply.content == "  ask about cats"


@pytest.mark.integration
async def test_ainvoke_with_the_local_smollm2(triton_server: TritonServer) -> None:
    model = _real_model(triton_server, "smollm2_stream", "chatml")
    reply = await model.bind(temperature=0.0, max_tokens=16).ainvoke("Say hello.")
    assert isinstance(reply.content, str) and reply.content.strip()
    assert "<|im_end|>" not in reply.content


# The stand-ins that count tokens (as the real vLLM backend and TRT-LLM ensemble do): the prompt's length over 4.
COUNTING_STANDINS = ("trtllm_ensemble", "vllm")


@pytest.mark.integration
@pytest.mark.parametrize("model", STANDIN_MODELS)
async def test_the_finish_reason_says_whether_the_reply_hit_the_token_limit(
    triton_server: TritonServer, model: str
) -> None:
    chat_model = _real_model(triton_server, model, "nemo-chat")
    marker = f"[{uuid.uuid4().hex[:12]}]"
    cut = await chat_model.bind(max_tokens=5).ainvoke(f"{marker} {{{{tokens:50}}}}")
    assert cut.content == "w0 w1 w2 w3 w4 "
    assert cut.response_metadata["finish_reason"] == "length"

    ended = await chat_model.bind(max_tokens=50).ainvoke("{{reply:Short and done.}}")
    assert ended.response_metadata["finish_reason"] == "stop"
    stopped = await chat_model.bind(max_tokens=50, stop=[" END"]).ainvoke("{{reply:Sure. END and more}}")
    assert stopped.content == "Sure."
    assert stopped.response_metadata["finish_reason"] == "stop"

    # Usage is the model's own count where the server sends one, else ours of what was sent and written.
    prompt = triton_server.find_request(model, marker).prompt
    assert cut.usage_metadata is not None
    if model in COUNTING_STANDINS:
        assert cut.usage_metadata["input_tokens"] == math.ceil(len(prompt) / 4)
        assert cut.usage_metadata["output_tokens"] == 5
    else:
        assert cut.usage_metadata["input_tokens"] == EstimatedTokenCounter().count(prompt)
        assert cut.usage_metadata["output_tokens"] == EstimatedTokenCounter().count("w0 w1 w2 w3 w4 ")


@pytest.mark.integration
async def test_streamed_replies_end_with_the_finish_reason_too(triton_server: TritonServer) -> None:
    chat_model = _real_model(triton_server, "vllm", "nemo-chat")
    chunks = [chunk async for chunk in chat_model.bind(max_tokens=3).astream("{{tokens:20}}")]
    assert chunks[-1].response_metadata["finish_reason"] == "length"
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata["output_tokens"] == 3
