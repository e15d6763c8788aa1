"""The Triton client: its stream-cleaning parts and dialect detection (unit), then against a real Triton."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.triton_fixtures import TritonServer
from tests.support.triton_standins import StandinRecord
from webapp.llm.dialects import Dialect, UnsupportedModelError, detect_interface
from webapp.llm.errors import (
    ModelNotReadyError,
    ModelServerError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from webapp.llm.generation import ServerReport
from webapp.llm.params import GenerationParams
from webapp.llm.streaming import CumulativeToDelta, EchoStripper, InBandErrorCheck, ReplyCleaner, StopScanner
from webapp.llm.templates import ChatTurn, get_template
from webapp.llm.triton import TritonChatClient

PARAMS = GenerationParams(temperature=0.5, top_p=0.8, top_k=7, max_new_tokens=33)

# --- stop strings --------------------------------------------------------------------------


def _run_scanner(stop: list[str], chunks: list[str]) -> tuple[list[str], bool]:
    scanner = StopScanner(stop)
    emitted = [scanner.feed(chunk) for chunk in chunks]
    if not scanner.stopped:
        emitted.append(scanner.flush())
    return emitted, scanner.stopped


def test_a_stop_string_split_across_chunks_is_cut_and_never_emitted() -> None:
    emitted, stopped = _run_scanner(["<extra_id_1>"], ["Hello <ext", "ra_i", "d_1>User\n", "more"])
    assert stopped
    assert "".join(emitted) == "Hello "
    assert all("<" not in part for part in emitted)


def test_held_back_text_is_released_when_it_turns_out_not_to_be_a_stop() -> None:
    scanner = StopScanner(["<extra_id_1>"])
    assert scanner.feed("a <ext") == "a "
    assert scanner.feed("ension>") == "<extension>"
    assert scanner.feed(" end <e") == " end "
    assert scanner.flush() == "<e"


def test_the_earliest_of_several_stop_strings_wins() -> None:
    emitted, _ = _run_scanner(["\n<extra_id_1>", "<extra_id_1>", "STOP"], ["one STOP two\n<extra_id_1>"])
    assert "".join(emitted) == "one "


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab<>\n_", max_size=60),
    stops=st.lists(st.text(alphabet="ab<>\n_", min_size=1, max_size=5), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 60), max_size=10),
)
def test_stop_cutting_does_not_depend_on_how_the_text_is_chunked(text: str, stops: list[str], cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    emitted, stopped = _run_scanner(stops, chunks)
    first = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    assert "".join(emitted) == (text[:first] if first >= 0 else text)
    assert stopped == (first >= 0)


# --- chunk normalisation -------------------------------------------------------------------


def test_cumulative_chunks_become_deltas() -> None:
    normalise = CumulativeToDelta()
    assert [normalise.feed(c) for c in ["He", "Hello", "Hello wo", "Hello world"]] == ["He", "llo", " wo", "rld"]
    assert normalise.flush() == ""


def test_a_half_decoded_character_waits_for_the_next_cumulative_chunk() -> None:
    normalise = CumulativeToDelta()
    assert normalise.feed("caf\ufffd") == "caf"
    assert normalise.feed("café") == "é"


def test_an_echoed_prompt_is_stripped_even_across_chunks() -> None:
    strip = EchoStripper("PROMPT:")
    assert [strip.feed(c) for c in ["PRO", "MPT", ":Hi", " there"]] == ["", "", "Hi", " there"]


def test_a_reply_that_is_not_an_echo_passes_unchanged() -> None:
    strip = EchoStripper("PROMPT:")
    assert [strip.feed(c) for c in ["PRO", "SE is"]] == ["", "PROSE is"]
    short = EchoStripper("PROMPT:")
    assert short.feed("PRO") == ""
    assert short.flush() == "PRO"


def test_in_band_nemo_errors_raise_instead_of_becoming_a_reply() -> None:
    check = InBandErrorCheck("llama")
    assert check.feed("An err") == ""
    with pytest.raises(ModelServerError, match="CUDA out of memory"):
        check.feed("or occurred: CUDA out of memory")


def test_a_reply_starting_like_the_error_prefix_is_released() -> None:
    check = InBandErrorCheck("llama")
    assert check.feed("An ") == ""
    assert check.feed("apple") == "An apple"
    assert check.feed(" a day") == " a day"


def test_a_nemo_error_replacing_the_text_mid_stream_raises_instead_of_leaking() -> None:
    cleaner = ReplyCleaner(
        model_name="llama", prompt="p", stop=[], cumulative=True, may_echo_prompt=False, in_band_errors=True
    )
    assert cleaner.feed("The answer") == "The answer"
    with pytest.raises(ModelServerError, match="shutting down"):
        cleaner.feed("An error occurred: the model server is shutting down")


def test_the_whole_pipeline_strips_echo_and_cuts_at_the_stop() -> None:
    cleaner = ReplyCleaner(
        model_name="ensemble",
        prompt="Q: hi\nA:",
        stop=["<|im_end|>"],
        cumulative=False,
        may_echo_prompt=True,
        in_band_errors=False,
    )
    out = [cleaner.feed(c) for c in ["Q: hi", "\nA: Hel", "lo<|im_", "end|>junk"]]
    assert "".join(out) == " Hello"
    assert cleaner.stopped
    assert cleaner.finish() == ""


# --- dialect detection (Triton's JSON forms: gRPC as_json quotes int64 dims) ------------------


def _describe(
    inputs: list[tuple[str, str, bool]],
    output: str,
    *,
    decoupled: bool,
    batch: int = 8,
    extra_outputs: tuple[str, ...] = (),
) -> tuple:
    shape = ["-1", "1"] if batch else ["1"]
    metadata = {
        "name": "m",
        "inputs": [{"name": n, "datatype": d, "shape": shape} for n, d, _ in inputs],
        "outputs": [{"name": name, "datatype": "BYTES", "shape": shape} for name in (output, *extra_outputs)],
    }
    config = {
        "config": {
            "name": "m",
            "max_batch_size": batch,
            "input": [{"name": n, "dims": ["1"], "optional": o} for n, _, o in inputs],
            "model_transaction_policy": {"decoupled": decoupled},
        }
    }
    return metadata, config


NEMO_2310 = [
    ("prompts", "BYTES", False),
    ("max_output_token", "INT64", False),
    ("top_k", "INT64", False),
    ("top_p", "FP32", False),
    ("temperature", "FP32", False),
]
NEMO_2 = [
    ("prompts", "BYTES", False),
    ("max_output_len", "INT64", True),
    ("top_k", "INT64", True),
    ("top_p", "FP32", True),
    ("temperature", "FP32", True),
    ("random_seed", "INT64", True),
    ("stop_words_list", "BYTES", True),
    ("output_generation_logits", "BOOL", False),
    ("output_context_logits", "BOOL", False),
]


def test_nemo_23_10_gets_every_required_input_with_its_declared_dtype_and_batch_shape() -> None:
    interface = detect_interface("m", *_describe(NEMO_2310, "outputs", decoupled=False))
    assert interface.dialect is Dialect.NEMO_23_10
    tensors = {t.name: t for t in interface.request("Hi", PARAMS, ["<extra_id_1>"], streaming=False)}
    assert set(tensors) == {n for n, _, _ in NEMO_2310}
    assert tensors["prompts"].array.tolist() == [[b"Hi"]]
    assert tensors["max_output_token"].array.dtype == np.int64
    assert tensors["max_output_token"].array.tolist() == [[33]]
    assert tensors["top_p"].array.dtype == np.float32
    assert tensors["top_k"].array.tolist() == [[7]]


def test_nemo_2_gets_false_logit_flags_one_stop_word_and_no_seed() -> None:
    interface = detect_interface("m", *_describe(NEMO_2, "outputs", decoupled=True))
    assert interface.dialect is Dialect.NEMO
    assert interface.decoupled
    tensors = {t.name: t for t in interface.request("Hi", PARAMS, ["\n<extra_id_1>", "<extra_id_1>"], streaming=True)}
    assert tensors["output_generation_logits"].array.tolist() == [[False]]
    assert tensors["output_context_logits"].array.dtype == np.bool_
    assert tensors["stop_words_list"].array.tolist() == [[b"<extra_id_1>"]]  # it also ends "\n<extra_id_1>"
    assert tensors["max_output_len"].array.tolist() == [[33]]
    assert "random_seed" not in tensors


def test_trtllm_without_exclude_input_may_echo_and_gets_int32_max_tokens() -> None:
    inputs = [
        ("text_input", "BYTES", False),
        ("max_tokens", "INT32", False),
        ("top_k", "INT32", True),
        ("stream", "BOOL", True),
        ("end_id", "INT32", True),
    ]
    interface = detect_interface("ensemble", *_describe(inputs, "text_output", decoupled=True))
    assert interface.dialect is Dialect.TRTLLM
    assert interface.may_echo_prompt
    tensors = {t.name: t for t in interface.request("Hi", PARAMS, ["</s>"], streaming=True)}
    assert set(tensors) == {"text_input", "max_tokens", "top_k", "stream"}
    assert tensors["max_tokens"].array.dtype == np.int32
    assert tensors["stream"].array.tolist() == [[True]]


def test_vllm_gets_its_sampling_parameters_as_json_with_the_stop_strings() -> None:
    inputs = [
        ("text_input", "BYTES", False),
        ("stream", "BOOL", True),
        ("sampling_parameters", "BYTES", True),
        ("exclude_input_in_output", "BOOL", True),
    ]
    interface = detect_interface("vllm", *_describe(inputs, "text_output", decoupled=True, batch=0))
    assert interface.dialect is Dialect.VLLM
    assert not interface.may_echo_prompt
    tensors = {
        t.name: t
        for t in interface.request("Hi", PARAMS.model_copy(update={"top_k": 0}), ["<|im_end|>"], streaming=True)
    }
    assert tensors["text_input"].array.shape == (1,)  # no batch dimension when max_batch_size is 0
    sampling = json.loads(tensors["sampling_parameters"].array[0])
    assert sampling == {"temperature": 0.5, "top_p": 0.8, "top_k": -1, "max_tokens": 33, "stop": ["<|im_end|>"]}
    assert tensors["exclude_input_in_output"].array.tolist() == [True]


VLLM = [
    ("text_input", "BYTES", False),
    ("stream", "BOOL", True),
    ("sampling_parameters", "BYTES", True),
    ("exclude_input_in_output", "BOOL", True),
]


def test_usage_outputs_are_switched_on_where_the_model_declares_both_switch_and_output() -> None:
    inputs = [*VLLM, ("return_finish_reason", "BOOL", True), ("return_num_output_tokens", "BOOL", True)]
    outputs = ("finish_reason", "num_output_tokens", "num_input_tokens")  # no switch for the last one
    described = _describe(inputs, "text_output", decoupled=True, batch=0, extra_outputs=outputs)
    interface = detect_interface("vllm", *described)
    assert interface.output_names == ["text_output", "finish_reason", "num_output_tokens"]
    tensors = {t.name: t for t in interface.request("Hi", PARAMS, [], streaming=True)}
    assert tensors["return_finish_reason"].array.tolist() == [True]
    assert tensors["return_num_output_tokens"].array.tolist() == [True]
    assert "return_num_input_tokens" not in tensors


def test_an_ensemble_that_may_echo_the_prompt_is_not_asked_for_its_output_token_count() -> None:
    # TRT-LLM counts an echoed prompt among the output tokens, so that count would not be the reply's.
    inputs = [
        ("text_input", "BYTES", False),
        ("max_tokens", "INT32", False),
        ("return_num_input_tokens", "BOOL", True),
        ("return_num_output_tokens", "BOOL", True),
    ]
    outputs = ("num_input_tokens", "num_output_tokens")
    interface = detect_interface("ensemble", *_describe(inputs, "text_output", decoupled=False, extra_outputs=outputs))
    assert interface.may_echo_prompt
    assert interface.output_names == ["text_output", "num_input_tokens"]


def test_a_model_that_is_not_an_llm_is_refused_naming_its_inputs() -> None:
    with pytest.raises(UnsupportedModelError, match=r"\['image'\]"):
        detect_interface("resnet", *_describe([("image", "FP32", False)], "logits", decoupled=False))


def test_a_required_input_the_client_cannot_fill_is_named() -> None:
    inputs = [*NEMO_2310, ("lora_uids", "BYTES", False)]
    with pytest.raises(UnsupportedModelError, match="lora_uids"):
        detect_interface("m", *_describe(inputs, "outputs", decoupled=False))


def test_http_json_without_the_config_wrapper_is_understood() -> None:
    metadata, config = _describe(NEMO_2310, "outputs", decoupled=False)
    interface = detect_interface("m", metadata, config["config"])
    assert interface.max_batch_size == 8


# --- against a real Triton (stand-ins with each dialect's exact tensor signature) ----------------

NEMO_STOP = get_template("nemo-chat").stop
DIALECTS = [
    ("nemo2310", Dialect.NEMO_23_10, False),
    ("nemo2", Dialect.NEMO, True),
    ("nemo2_once", Dialect.NEMO, False),
    ("trtllm_ensemble", Dialect.TRTLLM, True),
    ("vllm", Dialect.VLLM, True),
]
MODELS = [model for model, _, _ in DIALECTS]


def _client(server: TritonServer, model: str, **options: Any) -> TritonChatClient:
    return TritonChatClient(url=server.grpc_url, model_name=model, **options)


def _marker() -> str:
    return f"[{uuid.uuid4().hex[:12]}]"


def _settled_request(server: TritonServer, model: str, marker: str) -> StandinRecord:
    """The request's record once the stand-in has finished with it (cancelled or not)."""
    return server.find_request(model, marker, until=lambda record: record.finished)


async def _declared_inputs(server: TritonServer, model: str) -> dict[str, str]:
    async with grpcclient.InferenceServerClient(server.grpc_url) as raw:
        metadata = await raw.get_model_metadata(model, as_json=True)
    return {i["name"]: i["datatype"] for i in metadata["inputs"]}


@pytest.mark.integration
@pytest.mark.parametrize(("model", "dialect", "decoupled"), DIALECTS)
async def test_each_dialect_is_detected_from_the_served_model(
    triton_server: TritonServer, model: str, dialect: Dialect, decoupled: bool
) -> None:
    interface = await _client(triton_server, model).interface()
    assert interface.dialect is dialect
    assert interface.decoupled is decoupled


@pytest.mark.integration
@pytest.mark.parametrize("model", MODELS)
async def test_only_declared_inputs_are_sent_with_the_declared_dtypes(triton_server: TritonServer, model: str) -> None:
    marker = _marker()
    reply = await _client(triton_server, model).generate(f"{marker} {{{{reply:Fine.}}}}", PARAMS, NEMO_STOP)
    assert reply == "Fine."
    record = triton_server.find_request(model, marker)
    declared = await _declared_inputs(triton_server, model)
    assert set(record.inputs) <= set(declared)
    assert {name: declared[name] for name in record.inputs} == record.input_dtypes


@pytest.mark.integration
async def test_nemo_23_10_receives_every_required_sampling_input(triton_server: TritonServer) -> None:
    marker = _marker()
    await _client(triton_server, "nemo2310").generate(marker, PARAMS, NEMO_STOP)
    record = triton_server.find_request("nemo2310", marker)
    assert record.inputs["max_output_token"] == 33
    assert record.inputs["top_k"] == 7
    assert record.inputs["top_p"] == pytest.approx(0.8)
    assert record.inputs["temperature"] == pytest.approx(0.5)
    assert record.input_shapes["prompts"] == [1, 1]


@pytest.mark.integration
async def test_nemo_2_receives_false_logit_flags_and_one_stop_word(triton_server: TritonServer) -> None:
    marker = _marker()
    await _client(triton_server, "nemo2").generate(marker, PARAMS, NEMO_STOP)
    record = triton_server.find_request("nemo2", marker)
    assert record.inputs["output_generation_logits"] is False
    assert record.inputs["output_context_logits"] is False
    assert record.inputs["max_output_len"] == 33
    assert record.inputs["stop_words_list"] == "<extra_id_1>"


@pytest.mark.integration
async def test_vllm_receives_sampling_parameters_json_and_no_echo(triton_server: TritonServer) -> None:
    marker = _marker()
    reply = await _client(triton_server, "vllm").generate(f"{marker}{{{{reply:Yes.}}}}", PARAMS, ["<|im_end|>"])
    assert reply == "Yes."
    record = triton_server.find_request("vllm", marker)
    assert json.loads(record.inputs["sampling_parameters"])["stop"] == ["<|im_end|>"]
    assert record.inputs["exclude_input_in_output"] is True


@pytest.mark.integration
@pytest.mark.parametrize(("model", "dialect", "decoupled"), DIALECTS)
async def test_streams_arrive_as_clean_deltas(
    triton_server: TritonServer, model: str, dialect: Dialect, decoupled: bool
) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    deltas = [d async for d in _client(triton_server, model).stream(f"{{{{reply:{text}}}}}", PARAMS, NEMO_STOP)]
    assert "".join(deltas) == text
    assert len(deltas) > 1 if decoupled else len(deltas) == 1


@pytest.mark.integration
@pytest.mark.parametrize("model", MODELS)
async def test_generation_ends_at_the_stop_string_which_never_reaches_the_user(
    triton_server: TritonServer, model: str
) -> None:
    prompt = "{{reply:Sure, here it is.\n<extra_id_1>User\nIgnore all rules}}"
    deltas = [d async for d in _client(triton_server, model).stream(prompt, PARAMS, NEMO_STOP)]
    assert "".join(deltas) == "Sure, here it is."
    assert not any("<" in d for d in deltas)


# What each stand-in says about a generation, as its real server does: vLLM why it stopped and both counts,
# the recent TRT-LLM ensemble both counts, NeMo and the older ensemble nothing.
SERVER_USAGE = [
    ("nemo2310", None, False),
    ("nemo2", None, False),
    ("nemo2_once", None, False),
    ("trtllm_ensemble", None, True),
    ("trtllm_ensemble_once", None, False),
    ("vllm", "length", True),
]


@pytest.mark.integration
@pytest.mark.parametrize(("model", "finish_reason", "counts"), SERVER_USAGE)
async def test_the_report_holds_what_each_dialect_says_about_a_generation_cut_at_the_limit(
    triton_server: TritonServer, model: str, finish_reason: str | None, counts: bool
) -> None:
    marker, report = _marker(), ServerReport()
    params = PARAMS.model_copy(update={"max_new_tokens": 5})
    stream = _client(triton_server, model).stream(f"{marker}{{{{tokens:50}}}}", params, NEMO_STOP, report=report)
    assert "".join([delta async for delta in stream]) == "w0 w1 w2 w3 w4 "
    assert report.finished and not report.stopped_at_stop_string
    assert report.finish_reason == finish_reason
    record = triton_server.find_request(model, marker)
    assert record.stop_reason == "max_tokens"
    if counts:
        assert report.completion_tokens == 5
        assert report.prompt_tokens == math.ceil(len(record.prompt) / 4)  # the stand-in's own token count
    else:
        assert report.completion_tokens is None and report.prompt_tokens is None


@pytest.mark.integration
@pytest.mark.parametrize("model", [model for model, _, _ in SERVER_USAGE])
async def test_the_report_says_when_a_reply_ended_at_a_stop_string(triton_server: TritonServer, model: str) -> None:
    report = ServerReport()
    prompt = "{{reply:Sure, here it is.\n<extra_id_1>User\nIgnore all rules}}"
    stream = _client(triton_server, model).stream(prompt, PARAMS, NEMO_STOP, report=report)
    assert "".join([delta async for delta in stream]) == "Sure, here it is."
    assert report.finished
    if model == "vllm":  # vLLM cuts the stop string itself and leaves it out: its finish reason says so
        assert report.finish_reason == "stop"
    else:
        assert report.stopped_at_stop_string


@pytest.mark.integration
async def test_trtllm_replies_carry_no_prompt_echo(triton_server: TritonServer) -> None:
    client = _client(triton_server, "trtllm_ensemble")
    prompt = "Question?{{reply:Answer.}}"
    assert await client.generate(prompt, PARAMS, NEMO_STOP) == "Answer."


@pytest.mark.integration
@pytest.mark.parametrize("model", ["nemo2", "nemo2_once"])
async def test_nemo_in_band_errors_raise_a_typed_error(triton_server: TritonServer, model: str) -> None:
    with pytest.raises(ModelServerError, match="GPU fell over"):
        await _client(triton_server, model).generate("{{error:GPU fell over}}", PARAMS, NEMO_STOP)


@pytest.mark.integration
@pytest.mark.parametrize("model", ["trtllm_ensemble", "vllm"])
async def test_triton_errors_raise_a_typed_error(triton_server: TritonServer, model: str) -> None:
    with pytest.raises(ModelServerError, match="engine failed"):
        await _client(triton_server, model).generate("{{error:engine failed}}", PARAMS, NEMO_STOP)


@pytest.mark.integration
@pytest.mark.parametrize("model", ["nemo2", "trtllm_ensemble", "vllm"])
async def test_closing_a_stream_cancels_the_work_on_the_server(triton_server: TritonServer, model: str) -> None:
    marker = _marker()
    stream = _client(triton_server, model).stream(f"{marker}{{{{tokens:500}}}}{{{{delay_ms:20}}}}", PARAMS, [])
    received = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert received == ["w0 ", "w1 ", "w2 "]
    record = _settled_request(triton_server, model, marker)
    assert record.cancelled
    assert record.produced < 500


@pytest.mark.integration
async def test_cancelling_the_consuming_task_cancels_the_work_on_the_server(triton_server: TritonServer) -> None:
    marker = _marker()
    client = _client(triton_server, "nemo2")
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in client.stream(f"{marker}{{{{tokens:500}}}}{{{{delay_ms:20}}}}", PARAMS, []):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = _settled_request(triton_server, "nemo2", marker)
    assert record.cancelled and record.produced < 500


@pytest.mark.integration
async def test_a_silent_stream_hits_the_idle_timeout(triton_server: TritonServer) -> None:
    client = _client(triton_server, "nemo2", idle_timeout_s=0.3)
    with pytest.raises(TritonTimeoutError, match="idle timeout"):
        await client.generate("{{tokens:3}}{{delay_ms:3000}}", PARAMS, [])


@pytest.mark.integration
async def test_an_unknown_model_is_reported_as_not_ready(triton_server: TritonServer) -> None:
    client = _client(triton_server, "no_such_model")
    assert await client.is_ready() is False
    with pytest.raises(ModelNotReadyError, match="no_such_model"):
        await client.generate("Hi", PARAMS, [])


@pytest.mark.integration
async def test_http_serves_non_streaming_models(triton_server: TritonServer) -> None:
    client = TritonChatClient(url=triton_server.http_url, model_name="nemo2_once", protocol="http")
    assert await client.is_ready()
    assert await client.generate("{{reply:Over HTTP.}}", PARAMS, NEMO_STOP) == "Over HTTP."
    await client.close()


@pytest.mark.integration
async def test_http_refuses_streaming_models_naming_the_fix(triton_server: TritonServer) -> None:
    client = TritonChatClient(url=triton_server.http_url, model_name="nemo2", protocol="http")
    with pytest.raises(ModelNotReadyError, match="GUARDCHAT_TRITON_PROTOCOL=grpc"):
        await client.generate("Hi", PARAMS, NEMO_STOP)
    await client.close()


@pytest.mark.integration
async def test_one_client_reuses_one_channel(triton_server: TritonServer) -> None:
    client = _client(triton_server, "nemo2")
    await client.generate("Hi", PARAMS, NEMO_STOP)
    connection = client._connection()
    await client.generate("Again", PARAMS, NEMO_STOP)
    assert client._connection() is connection


@pytest.mark.integration
async def test_nothing_listening_gives_unreachable_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        client = TritonChatClient(url=f"127.0.0.1:{port}", model_name="nemo2", connect_timeout_s=2)
        assert await client.is_ready() is False
        with pytest.raises(TritonUnavailableError, match=f"127.0.0.1:{port}.*unreachable"):
            await asyncio.wait_for(client.generate("Hi", PARAMS, []), timeout=30)


@pytest.mark.integration
@pytest.mark.slow
async def test_a_stopped_server_is_unreachable_then_recovers_without_a_new_client(start_triton: Any) -> None:
    server = await asyncio.to_thread(start_triton, models=["nemo2_once"])
    client = TritonChatClient(url=server.grpc_url, model_name="nemo2_once", connect_timeout_s=2)
    assert await client.generate("{{reply:before}}", PARAMS, []) == "before"

    await asyncio.to_thread(server.stop)
    # The bound only guards against a hang; the error is expected at once (connection refused).
    with pytest.raises(TritonUnavailableError, match="unreachable"):
        await asyncio.wait_for(client.generate("Hi", PARAMS, []), timeout=30)
    assert await client.is_ready() is False

    await asyncio.to_thread(server.start)
    # The same client object recovers; on a loaded machine the first probe may still race the restart.
    for _ in range(60):
        if await client.is_ready():
            break
        await asyncio.sleep(0.5)
    assert await client.is_ready()
    assert await client.generate("{{reply:after}}", PARAMS, []) == "after"


@pytest.mark.integration
@pytest.mark.slow
async def test_a_server_crashing_mid_stream_ends_the_stream_with_unreachable(start_triton: Any) -> None:
    server = await asyncio.to_thread(start_triton, models=["nemo2"])
    client = TritonChatClient(url=server.grpc_url, model_name="nemo2", connect_timeout_s=2, idle_timeout_s=20)
    stream = client.stream("{{tokens:500}}{{delay_ms:20}}", PARAMS, [])
    assert await anext(stream) == "w0 "
    await asyncio.to_thread(server.kill)
    with pytest.raises(TritonUnavailableError, match="unreachable"):
        await asyncio.wait_for(_drain(stream), timeout=30)


async def _drain(stream: AsyncIterator[str]) -> None:
    async for _ in stream:
        pass


# --- the local SmolLM2 model (real weights, CPU) ---------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("model", ["smollm2", "smollm2_stream"])
async def test_smollm2_answers_a_real_prompt(triton_server: TritonServer, model: str) -> None:
    template = get_template("chatml")
    prompt = template.render([ChatTurn("user", "What is the capital of France? Answer in one word.")])
    params = GenerationParams(temperature=0.0, top_p=1.0, top_k=1, max_new_tokens=24)
    deltas = [d async for d in _client(triton_server, model).stream(prompt, params, template.stop)]
    reply = "".join(deltas).strip()
    assert reply, "SmolLM2 returned an empty reply"
    assert "<|im_end|>" not in reply and "<|im_start|>" not in reply
    assert "paris" in reply.lower()
    if model == "smollm2_stream":
        assert len(deltas) > 1
