"""The local Triton model server, driven with raw tritonclient (no GuardChat client in the way)."""

from __future__ import annotations

import itertools
import queue
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.support.paths import PROJECT_ROOT
from tests.support.ports import free_port
from tests.support.triton_fixtures import TritonServer
from webapp.llm.dialects import USAGE_OUTPUTS
from webapp.llm.local_server import LocalServerError, ServerNotReadyError, wait_until_ready
from webapp.llm.synthetic import synthetic_text

pytestmark = pytest.mark.integration

CHATML_QUESTION = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    # "capital city": with llama.cpp as built by llama-cpp-python 0.3.35/0.3.36, greedy SmolLM2 answers
    # "What is the capital of France?" after this system prompt in French nonsense, and this one with Paris.
    "<|im_start|>user\nWhat is the capital city of France?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def tensor(name: str, value: object, dtype: str) -> grpcclient.InferInput:
    """A ``[1, 1]`` input, the shape NeMo's batched interface takes."""
    numpy_dtype = {"BYTES": np.object_, "INT64": np.int64, "FP32": np.float32, "BOOL": np.bool_}[dtype]
    data = np.array([[value.encode() if isinstance(value, str) else value]], dtype=numpy_dtype)
    infer_input = grpcclient.InferInput(name, list(data.shape), dtype)
    infer_input.set_data_from_numpy(data)
    return infer_input


def nemo_inputs(prompt: str, **optional: tuple[object, str]) -> list[grpcclient.InferInput]:
    inputs = [
        tensor("prompts", prompt, "BYTES"),
        tensor("output_generation_logits", False, "BOOL"),
        tensor("output_context_logits", False, "BOOL"),
    ]
    return inputs + [tensor(name, value, dtype) for name, (value, dtype) in optional.items()]


def greedy(max_output_len: int = 48) -> dict[str, tuple[object, str]]:
    return {"max_output_len": (max_output_len, "INT64"), "top_k": (1, "INT64"), "temperature": (0.0, "FP32")}


USAGE_SWITCHES = {name: (True, "BOOL") for name in USAGE_OUTPUTS}


def infer_result(server: TritonServer, model: str, inputs: list[grpcclient.InferInput]) -> grpcclient.InferResult:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        return client.infer(model, inputs)
    finally:
        client.close()


def infer_once(server: TritonServer, model: str, inputs: list[grpcclient.InferInput]) -> str:
    outputs = infer_result(server, model, inputs).as_numpy("outputs")
    assert outputs.shape == (1, 1)
    return outputs[0][0].decode()


@dataclass
class Usage:
    """A response's usage outputs (None: not sent)."""

    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None

    @classmethod
    def of(cls, result: grpcclient.InferResult) -> Usage:
        reason, inputs, outputs = (result.as_numpy(name) for name in USAGE_OUTPUTS.values())
        return cls(
            finish_reason=None if reason is None else reason[0][0].decode(),
            input_tokens=None if inputs is None else int(inputs[0][0]),
            output_tokens=None if outputs is None else int(outputs[0][0]),
        )


@dataclass
class Chunk:
    text: str
    at_s: float  # seconds after the request was sent
    usage: Usage | None = None


def stream(
    server: TritonServer, model: str, inputs: list[grpcclient.InferInput], *, cancel_after: int | None = None
) -> list[Chunk]:
    """Stream one request; return its chunks. With ``cancel_after``, cancel the stream after that many."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    responses: queue.Queue[tuple[object, object]] = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    chunks: list[Chunk] = []
    try:
        sent = time.monotonic()
        client.async_stream_infer(model, inputs, enable_empty_final_response=True)
        while cancel_after is None or len(chunks) < cancel_after:
            result, error = responses.get(timeout=60)
            assert error is None, error
            response = result.get_response()  # type: ignore[attr-defined]
            if response.outputs:
                text = result.as_numpy("outputs")[0][0].decode()  # type: ignore[attr-defined]
                chunks.append(Chunk(text, time.monotonic() - sent, Usage.of(result)))  # type: ignore[arg-type]
            if response.parameters["triton_final_response"].bool_param:
                break
    finally:
        client.stop_stream(cancel_requests=True)
        client.close()
    return chunks


def test_every_model_is_ready_with_the_nemo2_interface(triton_server: TritonServer) -> None:
    wait_until_ready(triton_server.http_url, triton_server.models, timeout_s=5)
    metadata = httpx.get(f"http://{triton_server.http_url}/v2/models/smollm2").json()
    inputs = {tensor["name"]: (tensor["datatype"], tensor["shape"]) for tensor in metadata["inputs"]}
    assert inputs["prompts"] == ("BYTES", [-1, -1])
    assert inputs["max_output_len"] == ("INT64", [-1, -1])
    assert inputs["top_p"] == ("FP32", [-1, -1])
    assert inputs["output_generation_logits"] == ("BOOL", [-1, -1])
    # NeMo's one output, then the usage outputs the vLLM and TRT-LLM backends have (sent only when asked for)
    assert [output["name"] for output in metadata["outputs"]] == ["outputs", *USAGE_OUTPUTS.values()]

    config = httpx.get(f"http://{triton_server.http_url}/v2/models/smollm2_stream/config").json()
    required = {tensor["name"] for tensor in config["input"] if not tensor.get("optional")}
    assert required == {"prompts", "output_generation_logits", "output_context_logits"}
    assert config["model_transaction_policy"]["decoupled"] is True


def test_smollm2_answers_a_real_prompt(triton_server: TritonServer) -> None:
    answer = infer_once(triton_server, "smollm2", nemo_inputs(CHATML_QUESTION, **greedy()))

    assert "Paris" in answer
    assert "<|im" not in answer  # generation ended at <|im_end|>, which is not part of the completion
    assert "capital city of France?" not in answer  # the completion only, no prompt echo


def test_smollm2_stream_sends_growing_cumulative_chunks(triton_server: TritonServer) -> None:
    chunks = stream(triton_server, "smollm2_stream", nemo_inputs(CHATML_QUESTION, **greedy()))

    texts = [chunk.text for chunk in chunks]
    assert len(texts) > 3
    assert all(later.startswith(earlier) and later != earlier for earlier, later in itertools.pairwise(texts))
    assert texts[-1] == infer_once(triton_server, "smollm2", nemo_inputs(CHATML_QUESTION, **greedy()))


def test_smollm2_says_why_it_stopped_and_counts_its_tokens_when_asked(triton_server: TritonServer) -> None:
    cut = Usage.of(infer_result(triton_server, "smollm2", nemo_inputs(CHATML_QUESTION, **greedy(4), **USAGE_SWITCHES)))
    assert cut.finish_reason == "length"
    assert cut.output_tokens == 4
    assert cut.input_tokens is not None and cut.input_tokens > 20  # the whole ChatML prompt, not the question

    whole = infer_result(triton_server, "smollm2", nemo_inputs(CHATML_QUESTION, **greedy(), **USAGE_SWITCHES))
    answer, usage = whole.as_numpy("outputs")[0][0].decode(), Usage.of(whole)
    assert "Paris" in answer
    assert usage.finish_reason == "stop"  # it ended at <|im_end|>, well before 48 tokens
    assert usage.output_tokens is not None and 4 < usage.output_tokens < 48
    assert usage.input_tokens == cut.input_tokens

    # Streamed: each chunk counts its own tokens; one more chunk, with no new text, says why it ended.
    chunks = stream(triton_server, "smollm2_stream", nemo_inputs(CHATML_QUESTION, **greedy(4), **USAGE_SWITCHES))
    usages = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert sum(u.output_tokens or 0 for u in usages) == 4
    assert [u.finish_reason for u in usages][-1] == "length"
    assert chunks[-1].text == chunks[-2].text


def test_smollm2_sends_no_usage_outputs_unless_asked(triton_server: TritonServer) -> None:
    plain = Usage.of(infer_result(triton_server, "smollm2", nemo_inputs(CHATML_QUESTION, **greedy(4))))
    assert plain == Usage(finish_reason=None, input_tokens=None, output_tokens=None)


def test_generation_stops_at_a_stop_word(triton_server: TritonServer) -> None:
    prompt = CHATML_QUESTION + "The capital of France is"
    full = infer_once(triton_server, "smollm2", nemo_inputs(prompt, **greedy()))
    assert "Paris" in full

    stopped = infer_once(triton_server, "smollm2", nemo_inputs(prompt, stop_words_list=("Paris", "BYTES"), **greedy()))
    assert stopped == full[: full.index("Paris")]


def test_bad_requests_come_back_in_band_like_nemo(triton_server: TritonServer) -> None:
    too_long = "word " * 5000  # beyond the model's 4,096-token context window
    answer = infer_once(triton_server, "smollm2", nemo_inputs(too_long, **greedy()))
    assert answer.startswith("An error occurred: ")
    assert "context window" in answer

    inputs = nemo_inputs(CHATML_QUESTION)
    inputs[1] = tensor("output_generation_logits", True, "BOOL")
    answer = infer_once(triton_server, "smollm2", inputs)
    assert answer == "An error occurred: this server does not return logits; send output_*_logits = false"

    chunks = stream(triton_server, "smollm2_stream", nemo_inputs(too_long, **greedy()))
    assert [chunk.text[:19] for chunk in chunks] == ["An error occurred: "]


def test_synthetic_bench_follows_its_schedule(triton_server: TritonServer) -> None:
    timing = {
        "synthetic_ttft_ms": (200.0, "FP32"),
        "synthetic_itl_ms": (20.0, "FP32"),
        "synthetic_tokens": (12, "INT64"),
    }

    chunks = stream(triton_server, "synthetic_bench", nemo_inputs("any prompt", **timing))

    assert [chunk.text for chunk in chunks] == [synthetic_text(n) for n in range(1, 13)]
    # Lower bounds only: the server never sends early, however busy the machine is.
    assert chunks[0].at_s >= 0.2
    assert chunks[-1].at_s >= 0.2 + 11 * 0.02
    started = time.monotonic()
    assert infer_once(triton_server, "synthetic_bench_once", nemo_inputs("any prompt", **timing)) == synthetic_text(12)
    assert time.monotonic() - started >= 0.2 + 11 * 0.02


def test_synthetic_bench_token_count_is_capped_by_max_output_len(triton_server: TritonServer) -> None:
    inputs = nemo_inputs("x", synthetic_tokens=(50, "INT64"), max_output_len=(5, "INT64"))
    assert infer_once(triton_server, "synthetic_bench_once", inputs) == synthetic_text(5)


def test_a_cancelled_stream_stops_the_models_work(triton_server: TritonServer) -> None:
    marker = "cancel-me-7f3a"
    chunks = stream(
        triton_server, "nemo2", nemo_inputs(f"{marker} {{{{tokens:200}}}}{{{{delay_ms:20}}}}"), cancel_after=5
    )
    assert len(chunks) == 5

    record = triton_server.find_request("nemo2", marker, until=lambda record: record.finished)
    assert record.cancelled
    assert record.stop_reason == "cancelled"
    assert record.produced < 20  # it stopped within a few tokens of the cancel, far short of 200
    time.sleep(0.2)
    assert triton_server.find_request("nemo2", marker).produced == record.produced


def test_stand_in_records_the_inputs_it_received(triton_server: TritonServer) -> None:
    infer_once(triton_server, "nemo2_once", nemo_inputs("record-me-51c2", max_output_len=(7, "INT64")))

    record = triton_server.find_request("nemo2_once", "record-me-51c2", until=lambda record: record.finished)
    assert record.inputs["max_output_len"] == 7
    assert record.input_dtypes == {
        "prompts": "BYTES",
        "output_generation_logits": "BOOL",
        "output_context_logits": "BOOL",
        "max_output_len": "INT64",
    }
    assert record.input_shapes["prompts"] == [1, 1]


def test_older_trtllm_ensemble_echoes_the_prompt(triton_server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    inputs = [
        grpcclient.InferInput("text_input", [1, 1], "BYTES"),
        grpcclient.InferInput("max_tokens", [1, 1], "INT32"),
    ]
    inputs[0].set_data_from_numpy(np.array([[b"echo-4b2a {{reply:Hi there}}"]], dtype=np.object_))
    inputs[1].set_data_from_numpy(np.array([[8]], dtype=np.int32))
    try:
        result = client.infer("trtllm_ensemble_once", inputs)
    finally:
        client.close()
    assert result.as_numpy("text_output")[0][0].decode() == "echo-4b2a {{reply:Hi there}}Hi there"


def test_a_private_server_survives_a_crash_and_shuts_down_cleanly(start_triton) -> None:
    server = start_triton(models=("nemo2", "nemo2_once"))
    assert infer_once(server, "nemo2_once", nemo_inputs("first")) == "Hello from the nemo2_once stand-in."
    ports = (server.http_port, server.grpc_port)

    server.kill()
    with pytest.raises(ServerNotReadyError):
        wait_until_ready(server.http_url, server.models, timeout_s=0.3)

    server.start()
    assert (server.http_port, server.grpc_port) == ports
    assert infer_once(server, "nemo2_once", nemo_inputs("second")) == "Hello from the nemo2_once stand-in."

    # A graceful stop ends a running stream at its next chunk, with an in-band error, not a silent cut.
    with ThreadPoolExecutor(max_workers=1) as pool:
        streaming = pool.submit(stream, server, "nemo2", nemo_inputs("stop-me-9d1e {{tokens:200}}{{delay_ms:20}}"))
        server.find_request("nemo2", "stop-me-9d1e", until=lambda record: record.produced >= 3)
        server.stop()
        chunks = streaming.result(timeout=30)
    assert chunks[-1].text == "An error occurred: the model server is shutting down"
    assert len(chunks) < 200
    assert not server.is_running
    with pytest.raises(ServerNotReadyError):
        wait_until_ready(server.http_url, server.models, timeout_s=0.3)


def test_wait_until_ready_fails_fast_when_the_server_process_is_gone() -> None:
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    with pytest.raises(LocalServerError, match=f"pid {dead_pid.pid}"):
        wait_until_ready(f"127.0.0.1:{free_port()}", ["smollm2"], timeout_s=30, server_pid=dead_pid.pid)


def test_command_line_help_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webapp.llm.local_server", "serve", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--synthetic-ttft-ms" in result.stdout


def test_serving_on_a_port_in_use_fails_at_once_with_a_clear_error() -> None:
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        ports = ["--http-port", str(port), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
        result = subprocess.run(
            [sys.executable, "-m", "webapp.llm.local_server", "serve", "--models", "synthetic_bench", *ports],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"HTTP port {port} on 127.0.0.1 is not available" in result.stderr
