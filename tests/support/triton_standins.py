"""Test-only stand-in Triton models with the exact tensor signatures of each dialect GuardChat meets.

Run as ``python -m tests.support.triton_standins --state-dir DIR ...`` (the `triton_server` fixture does). Each
stand-in produces deterministic text scripted by directives anywhere in the prompt:

    {{reply:TEXT}}    reply TEXT exactly            {{tokens:N}}   reply "w0 w1 ... w(N-1) "
    {{delay_ms:D}}    wait D ms before each token   {{error:TEXT}} fail with TEXT
Without directives the reply is "Hello from the <model> stand-in." Tokens are 4-character pieces of the reply,
so a stop string spans several chunks. Token counts are capped by the dialect's max-tokens input.

Server-side behaviour follows the real servers:
- nemo2310 / nemo2_once: one response; nemo2: decoupled, cumulative chunks. Errors come back in-band as
  "An error occurred: TEXT". NeMo 2 stops after emitting a stop word (it stays in the output); NeMo 23.10 has
  no stop input and runs on past it.
- trtllm_ensemble: decoupled; ``stream`` true sends deltas, otherwise one response. It stops after emitting a
  stop word. Without ``exclude_input_in_output`` a non-streamed reply starts with the prompt (streamed
  chunks never echo it). Errors are Triton errors.
- trtllm_ensemble_once: an older, non-decoupled ensemble with no ``exclude_input_in_output`` input: one
  response per request, always starting with the prompt; ``stream`` true is rejected.
- vllm: decoupled, no batch dimension; stop strings from ``sampling_parameters`` end generation and are left
  out of the text. Non-streamed replies echo the prompt unless ``exclude_input_in_output`` is true; streaming
  with ``exclude_input_in_output`` false is rejected, as vLLM does.
- Usage outputs, as the real backends send them when switched on: vllm (r24.12+) ``return_finish_reason`` /
  ``return_num_input_tokens`` / ``return_num_output_tokens``, trtllm_ensemble (recent tensorrt_llm) the two
  counts. Counts are in stand-in tokens (the prompt's: its length over 4), per response; a vllm stream ends with
  one more response (empty text) carrying the finish reason (a trtllm_ensemble one only if tokens are left to
  count). The older trtllm_ensemble_once and the NeMo stand-ins have none, like the servers they copy.

Each request is recorded as JSON under ``<state-dir>/<model>/`` (see `StandinRecord`): the inputs exactly as
received (name, Triton dtype, shape, values), how many tokens were produced, and whether Triton cancelled it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.proxy.types import Request
from tritonclient.utils import np_to_triton_dtype

from webapp.llm.local_models import (
    NEMO2_INPUTS,
    NEMO_OUTPUTS,
    ModelBinding,
    decode_texts,
    in_band_error,
    nemo_model_config,
    text_column,
)
from webapp.llm.local_server import (
    LOCAL_MODELS,
    local_model_bindings,
    run_triton,
    stop_on_signals,
    stop_when_parent_exits,
)
from webapp.llm.triton_cancellation import cancel_requested, shutting_down

STANDIN_MODELS = ("nemo2310", "nemo2", "nemo2_once", "trtllm_ensemble", "trtllm_ensemble_once", "vllm")
TOKEN_CHARS = 4
_DIRECTIVE = re.compile(r"\{\{(reply|tokens|delay_ms|error):(.*?)\}\}", re.DOTALL)


# --- what a request asked for -------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    tokens: list[str]
    delay_s: float = 0.0
    error: str | None = None


def script_for(prompt: str, model: str) -> Script:
    directives = {name: value for name, value in _DIRECTIVE.findall(prompt)}
    if "tokens" in directives:
        tokens = [f"w{i} " for i in range(int(directives["tokens"]))]
    else:
        reply = directives.get("reply", f"Hello from the {model} stand-in.")
        tokens = [reply[i : i + TOKEN_CHARS] for i in range(0, len(reply), TOKEN_CHARS)]
    return Script(tokens, float(directives.get("delay_ms", 0)) / 1000.0, directives.get("error"))


class GenerationError(RuntimeError):
    """A scripted {{error:...}} or a server shutdown: NeMo reports it in-band, TRT-LLM/vLLM as a Triton error."""


# --- the record of each request ------------------------------------------------------------------


@dataclass
class StandinRecord:
    """What one stand-in request received and did. Read by tests through the fixture."""

    model: str
    seq: int
    inputs: dict[str, Any]  # name -> the single value, or a flat list when the tensor has several elements
    input_dtypes: dict[str, str]  # name -> Triton dtype ("BYTES", "INT64", ...)
    input_shapes: dict[str, list[int]]
    received_at: float = 0.0  # time.time() when the stand-in got the request
    produced: int = 0  # tokens generated so far
    finished: bool = False
    cancelled: bool = False  # Triton told us the client went away, and generation stopped
    stop_reason: str | None = None  # "end" | "max_tokens" | "stop_word" | "cancelled" | "shutdown" | "error"

    @property
    def prompt(self) -> str:
        value = self.inputs.get("prompts", self.inputs.get("text_input", ""))
        return value if isinstance(value, str) else "\n".join(value)

    @classmethod
    def load(cls, path: Path) -> StandinRecord:
        return cls(**json.loads(path.read_text()))


def _python_value(item: Any) -> Any:
    return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item.item()


class RequestLog:
    """Writes one request's `StandinRecord` to ``<state_dir>/<model>/`` (atomically, on every change)."""

    _seq = itertools.count(1)
    _lock = threading.Lock()

    def __init__(self, state_dir: Path, model: str, request: Request) -> None:
        with self._lock:
            seq = next(self._seq)
        inputs, dtypes, shapes = {}, {}, {}
        for name, array in request.data.items():
            values = [_python_value(item) for item in array.reshape(-1)]
            inputs[name] = values[0] if len(values) == 1 else values
            dtypes[name] = "BYTES" if array.dtype.kind in "OSU" else np_to_triton_dtype(array.dtype)
            shapes[name] = list(array.shape)
        self.record = StandinRecord(model, seq, inputs, dtypes, shapes, received_at=time.time())
        # the pid keeps files apart when a restarted server reuses the state dir
        self._path = state_dir / model / f"{os.getpid()}-{seq:06d}.json"
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self.save()

    def update(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self.record, name, value)
        self.save()

    def save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.record)))
        os.replace(tmp, self._path)


# --- generation shared by all dialects -----------------------------------------------------------


@dataclass
class Generation:
    """Runs a script token by token, honouring a token cap, stop words and cancellation."""

    script: Script
    log: RequestLog
    request: Request
    max_tokens: int | None = None
    stop_words: Sequence[str] = ()
    keep_stop_word: bool = True  # NeMo / TRT-LLM keep the stop word in the output; vLLM drops it
    text: str = field(default="", init=False)

    async def deltas(self) -> AsyncIterator[str]:
        """Yield new text as it is generated (holding back a possible partial stop word when dropping it)."""
        if self.script.error is not None:
            self.log.update(finished=True, stop_reason="error")
            raise GenerationError(self.script.error)
        tokens = self.script.tokens
        if self.max_tokens is not None and self.max_tokens < len(tokens):
            tokens = tokens[: self.max_tokens]
            self.log.update(stop_reason="max_tokens")
        else:
            self.log.update(stop_reason="end")
        sent = 0
        for produced, token in enumerate(tokens, start=1):
            if self.script.delay_s:
                await asyncio.sleep(self.script.delay_s)
            if cancel_requested(self.request):
                self.log.update(cancelled=True, finished=True, stop_reason="cancelled")
                return
            if shutting_down():
                self.log.update(finished=True, stop_reason="shutdown")
                raise GenerationError("the model server is shutting down")
            self.text += token
            self.log.update(produced=produced)
            cut = self._stop_cut()
            if cut is not None:
                self.text = self.text[:cut]
                self.log.update(stop_reason="stop_word")
                break
            visible = len(self.text) - (0 if self.keep_stop_word else self._held_back())
            if visible > sent:
                yield self.text[sent:visible]
                sent = visible
        if len(self.text) > sent:
            yield self.text[sent:]
        self.log.update(finished=True)

    async def complete(self) -> str:
        return "".join([delta async for delta in self.deltas()])

    def _stop_cut(self) -> int | None:
        hits = [(self.text.find(word), word) for word in self.stop_words if word and word in self.text]
        if not hits:
            return None
        index, word = min(hits)
        return index + len(word) if self.keep_stop_word else index

    def _held_back(self) -> int:
        return max(
            (k for word in self.stop_words for k in range(1, len(word)) if self.text.endswith(word[:k])),
            default=0,
        )


def _bool_input(request: Request, name: str, default: bool) -> bool:
    array = request.data.get(name)
    return default if array is None else bool(array.reshape(-1)[0])


@dataclass
class UsageOutputs:
    """The usage outputs a request switched on, counted in stand-in tokens (see the module docstring)."""

    request: Request
    generation: Generation
    prompt: str
    batched: bool  # TRT-LLM: INT32 with the batch dimension; vLLM: UINT32 without
    finish_reasons: bool  # only vLLM reports why it stopped
    counted: int = 0

    @property
    def wanted(self) -> bool:
        return any(_bool_input(self.request, name, False) for name in self._switches)

    @property
    def _switches(self) -> tuple[str, ...]:
        counts = ("return_num_input_tokens", "return_num_output_tokens")
        return (*counts, "return_finish_reason") if self.finish_reasons else counts

    @property
    def uncounted(self) -> int:
        return self.generation.log.record.produced - self.counted

    def outputs(self, *, final: bool) -> dict[str, np.ndarray]:
        """This response's usage outputs: the tokens produced since the last response, and at the end why."""
        outputs: dict[str, np.ndarray] = {}
        if _bool_input(self.request, "return_num_output_tokens", False):
            outputs["num_output_tokens"] = self._count(self.uncounted)
            self.counted = self.generation.log.record.produced
        if _bool_input(self.request, "return_num_input_tokens", False):
            outputs["num_input_tokens"] = self._count(math.ceil(len(self.prompt) / TOKEN_CHARS))
        if self.finish_reasons and _bool_input(self.request, "return_finish_reason", False):
            reason = {"max_tokens": "length", "end": "stop", "stop_word": "stop"}.get(
                self.generation.log.record.stop_reason or ""
            )
            outputs["finish_reason"] = np.array([str(reason if final else None).encode()], dtype=np.object_)
        return outputs

    def _count(self, value: int) -> np.ndarray:
        return np.array([[value]], dtype=np.int32) if self.batched else np.array([value], dtype=np.uint32)


def _int_input(request: Request, name: str) -> int | None:
    array = request.data.get(name)
    return None if array is None else int(array.reshape(-1)[0])


# --- dialects -------------------------------------------------------------------------------------


NEMO2310_INPUTS = (
    Tensor(name="prompts", shape=(-1,), dtype=bytes),
    Tensor(name="max_output_token", shape=(-1,), dtype=np.int64),
    Tensor(name="top_k", shape=(-1,), dtype=np.int64),
    Tensor(name="top_p", shape=(-1,), dtype=np.float32),
    Tensor(name="temperature", shape=(-1,), dtype=np.float32),
)

TRTLLM_ENSEMBLE_INPUTS = (
    Tensor(name="text_input", shape=(1,), dtype=bytes),
    Tensor(name="max_tokens", shape=(1,), dtype=np.int32),
    Tensor(name="bad_words", shape=(-1,), dtype=bytes, optional=True),
    Tensor(name="stop_words", shape=(-1,), dtype=bytes, optional=True),
    Tensor(name="end_id", shape=(1,), dtype=np.int32, optional=True),
    Tensor(name="pad_id", shape=(1,), dtype=np.int32, optional=True),
    Tensor(name="top_k", shape=(1,), dtype=np.int32, optional=True),
    Tensor(name="top_p", shape=(1,), dtype=np.float32, optional=True),
    Tensor(name="temperature", shape=(1,), dtype=np.float32, optional=True),
    Tensor(name="length_penalty", shape=(1,), dtype=np.float32, optional=True),
    Tensor(name="repetition_penalty", shape=(1,), dtype=np.float32, optional=True),
    Tensor(name="min_length", shape=(1,), dtype=np.int32, optional=True),
    Tensor(name="presence_penalty", shape=(1,), dtype=np.float32, optional=True),
    Tensor(name="frequency_penalty", shape=(1,), dtype=np.float32, optional=True),
    Tensor(name="random_seed", shape=(1,), dtype=np.uint64, optional=True),
    Tensor(name="return_log_probs", shape=(1,), dtype=np.bool_, optional=True),
    Tensor(name="beam_width", shape=(1,), dtype=np.int32, optional=True),
    Tensor(name="stream", shape=(1,), dtype=np.bool_, optional=True),
    Tensor(name="exclude_input_in_output", shape=(1,), dtype=np.bool_, optional=True),
)
TRTLLM_ENSEMBLE_USAGE_INPUTS = (
    Tensor(name="return_num_input_tokens", shape=(1,), dtype=np.bool_, optional=True),
    Tensor(name="return_num_output_tokens", shape=(1,), dtype=np.bool_, optional=True),
)
TRTLLM_ENSEMBLE_OUTPUTS = (Tensor(name="text_output", shape=(-1,), dtype=bytes),)
TRTLLM_ENSEMBLE_USAGE_OUTPUTS = (
    Tensor(name="num_input_tokens", shape=(1,), dtype=np.int32),
    Tensor(name="num_output_tokens", shape=(1,), dtype=np.int32),
)
TRTLLM_ENSEMBLE_ONCE_INPUTS = tuple(t for t in TRTLLM_ENSEMBLE_INPUTS if t.name != "exclude_input_in_output")

VLLM_INPUTS = (
    Tensor(name="text_input", shape=(1,), dtype=bytes),
    Tensor(name="stream", shape=(1,), dtype=np.bool_, optional=True),
    Tensor(name="sampling_parameters", shape=(1,), dtype=bytes, optional=True),
    Tensor(name="exclude_input_in_output", shape=(1,), dtype=np.bool_, optional=True),
    Tensor(name="return_finish_reason", shape=(1,), dtype=np.bool_, optional=True),
    Tensor(name="return_num_input_tokens", shape=(1,), dtype=np.bool_, optional=True),
    Tensor(name="return_num_output_tokens", shape=(1,), dtype=np.bool_, optional=True),
)
VLLM_OUTPUTS = (
    Tensor(name="text_output", shape=(-1,), dtype=bytes),
    Tensor(name="finish_reason", shape=(-1,), dtype=bytes),
    Tensor(name="num_input_tokens", shape=(1,), dtype=np.uint32),
    Tensor(name="num_output_tokens", shape=(-1,), dtype=np.uint32),
)


class Standins:
    """The stand-in infer functions; each request is logged under ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir

    def _generation(self, model: str, request: Request, prompt: str, **options: Any) -> Generation:
        log = RequestLog(self._state_dir, model, request)
        return Generation(script_for(prompt, model), log, request, **options)

    # NeMo: one prompt per row; the first row's values apply; errors in-band.
    async def nemo2310(self, requests: list[Request]) -> list[dict[str, np.ndarray]]:
        return [await self._nemo_once("nemo2310", request, "max_output_token", stops=False) for request in requests]

    async def nemo2_once(self, requests: list[Request]) -> list[dict[str, np.ndarray]]:
        return [await self._nemo_once("nemo2_once", request, "max_output_len", stops=True) for request in requests]

    async def _nemo_once(self, model: str, request: Request, max_input: str, *, stops: bool) -> dict[str, np.ndarray]:
        prompts = decode_texts(request["prompts"])
        stop_words = decode_texts(request["stop_words_list"]) if stops and "stop_words_list" in request.data else []
        replies = []
        for row, prompt in enumerate(prompts):
            generation = self._generation(
                model, request, prompt, max_tokens=_int_input(request, max_input), stop_words=stop_words[row : row + 1]
            )
            try:
                replies.append(await generation.complete())
            except GenerationError as error:
                replies.append(in_band_error(error))
        return {"outputs": text_column(replies)}

    async def nemo2(self, requests: list[Request]) -> AsyncIterator[list[dict[str, np.ndarray]]]:
        (request,) = requests
        prompt = decode_texts(request["prompts"])[0]
        stop_words = decode_texts(request["stop_words_list"])[:1] if "stop_words_list" in request.data else []
        generation = self._generation(
            "nemo2", request, prompt, max_tokens=_int_input(request, "max_output_len"), stop_words=stop_words
        )
        try:
            async for _delta in generation.deltas():
                yield [{"outputs": text_column([generation.text])}]
        except GenerationError as error:
            yield [{"outputs": text_column([in_band_error(error)])}]

    async def trtllm_ensemble(self, requests: list[Request]) -> AsyncIterator[list[dict[str, np.ndarray]]]:
        (request,) = requests
        prompt = decode_texts(request["text_input"])[0]
        stream = _bool_input(request, "stream", False)
        echo = not _bool_input(request, "exclude_input_in_output", False)
        stop_words = decode_texts(request["stop_words"]) if "stop_words" in request.data else []
        generation = self._generation(
            "trtllm_ensemble", request, prompt, max_tokens=_int_input(request, "max_tokens"), stop_words=stop_words
        )
        usage = UsageOutputs(request, generation, prompt, batched=True, finish_reasons=False)
        if stream:
            async for delta in generation.deltas():
                yield [{"text_output": text_column([delta]), **usage.outputs(final=False)}]
            if usage.wanted and usage.uncounted and not generation.log.record.cancelled:
                yield [{"text_output": text_column([""]), **usage.outputs(final=True)}]
        else:
            text = await generation.complete()
            yield [{"text_output": text_column([prompt + text if echo else text]), **usage.outputs(final=True)}]

    async def trtllm_ensemble_once(self, requests: list[Request]) -> list[dict[str, np.ndarray]]:
        return [await self._trtllm_echoing_reply(request) for request in requests]

    async def _trtllm_echoing_reply(self, request: Request) -> dict[str, np.ndarray]:
        if _bool_input(request, "stream", False):
            raise ValueError("streaming requires a decoupled model; this ensemble is not decoupled")
        stop_rows = [decode_texts(row) for row in request["stop_words"]] if "stop_words" in request.data else None
        replies = []
        for row, prompt in enumerate(decode_texts(request["text_input"])):
            generation = self._generation(
                "trtllm_ensemble_once",
                request,
                prompt,
                max_tokens=_int_input(request, "max_tokens"),
                stop_words=stop_rows[row] if stop_rows else [],
            )
            replies.append(prompt + await generation.complete())
        return {"text_output": text_column(replies)}

    async def vllm(self, requests: list[Request]) -> AsyncIterator[list[dict[str, np.ndarray]]]:
        (request,) = requests
        prompt = decode_texts(request["text_input"])[0]
        stream = _bool_input(request, "stream", False)
        echo = not _bool_input(request, "exclude_input_in_output", stream)  # vLLM's default: echo unless streaming
        if echo and stream:
            raise ValueError("When streaming, `exclude_input_in_output` = False is not allowed.")
        parameters = (
            json.loads(decode_texts(request["sampling_parameters"])[0] or "{}")
            if ("sampling_parameters" in request.data)
            else {}
        )
        stop = parameters.get("stop") or []
        generation = self._generation(
            "vllm",
            request,
            prompt,
            max_tokens=int(parameters.get("max_tokens", 16)),
            stop_words=[stop] if isinstance(stop, str) else list(stop),
            keep_stop_word=False,
        )
        usage = UsageOutputs(request, generation, prompt, batched=False, finish_reasons=True)
        if stream:
            async for delta in generation.deltas():
                yield [{"text_output": _vllm_text(delta), **usage.outputs(final=False)}]
            if usage.wanted and not generation.log.record.cancelled:
                yield [{"text_output": _vllm_text(""), **usage.outputs(final=True)}]
        else:
            text = await generation.complete()
            yield [{"text_output": _vllm_text(prompt + text if echo else text), **usage.outputs(final=True)}]


def _vllm_text(text: str) -> np.ndarray:
    return np.array([text.encode("utf-8")], dtype=np.object_)


def standin_bindings(state_dir: Path, models: Sequence[str] = STANDIN_MODELS) -> list[ModelBinding]:
    standins = Standins(state_dir)
    decoupled_unbatched = ModelConfig(batching=False, decoupled=True)
    decoupled_batched = nemo_model_config(decoupled=True)
    bindings = [
        ModelBinding("nemo2310", standins.nemo2310, NEMO2310_INPUTS, NEMO_OUTPUTS, nemo_model_config(decoupled=False)),
        ModelBinding("nemo2", standins.nemo2, NEMO2_INPUTS, NEMO_OUTPUTS, decoupled_batched),
        ModelBinding("nemo2_once", standins.nemo2_once, NEMO2_INPUTS, NEMO_OUTPUTS, nemo_model_config(decoupled=False)),
        ModelBinding(
            "trtllm_ensemble",
            standins.trtllm_ensemble,
            TRTLLM_ENSEMBLE_INPUTS + TRTLLM_ENSEMBLE_USAGE_INPUTS,
            TRTLLM_ENSEMBLE_OUTPUTS + TRTLLM_ENSEMBLE_USAGE_OUTPUTS,
            decoupled_batched,
        ),
        ModelBinding(
            "trtllm_ensemble_once",
            standins.trtllm_ensemble_once,
            TRTLLM_ENSEMBLE_ONCE_INPUTS,
            TRTLLM_ENSEMBLE_OUTPUTS,
            nemo_model_config(decoupled=False),
        ),
        ModelBinding("vllm", standins.vllm, VLLM_INPUTS, VLLM_OUTPUTS, decoupled_unbatched),
    ]
    return [binding for binding in bindings if binding.name in models]


# --- entry point used by the fixture --------------------------------------------------------------


def _names(value: str) -> list[str]:
    return [name for name in value.split(",") if name]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.triton_standins")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--models", type=_names, default=list(STANDIN_MODELS + LOCAL_MODELS))
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--exit-timeout-s", type=int, default=10)
    parser.add_argument("--synthetic-ttft-ms", type=float, default=50.0)
    parser.add_argument("--synthetic-itl-ms", type=float, default=5.0)
    # one llama.cpp thread: tests share the CPUs, and two threads waiting on each other stall badly
    parser.add_argument("--smollm2-threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pytriton").setLevel(logging.WARNING)

    unknown = sorted(set(args.models) - set(STANDIN_MODELS) - set(LOCAL_MODELS))
    if unknown:
        parser.error(f"unknown models: {', '.join(unknown)}")
    bindings = standin_bindings(args.state_dir, [m for m in args.models if m in STANDIN_MODELS])
    local = [m for m in args.models if m in LOCAL_MODELS]
    if local:
        bindings += local_model_bindings(
            local,
            synthetic_ttft_ms=args.synthetic_ttft_ms,
            synthetic_itl_ms=args.synthetic_itl_ms,
            synthetic_tokens=32,
            threads=args.smollm2_threads,
        )
    stop = threading.Event()
    stop_on_signals(stop)
    stop_when_parent_exits(stop)
    run_triton(
        bindings,
        host="127.0.0.1",
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        stop=stop,
        workspace=args.workspace,
        exit_timeout_s=args.exit_timeout_s,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
