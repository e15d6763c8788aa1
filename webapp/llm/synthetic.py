"""`synthetic_bench`: a model with known timing, for measuring our own overhead. Not a chat model.

It takes NeMo's (>= 2.0) tensor interface, so our client talks to it exactly as to a real deployment, plus
optional ``synthetic_ttft_ms`` / ``synthetic_itl_ms`` / ``synthetic_tokens`` inputs that override the server's
defaults per request. It waits until time-to-first-token, then emits one token per inter-token delay, on an
absolute schedule so delays do not drift. Text is deterministic: token i is ``WORDS[i % len(WORDS)] + " "``.
The streaming variant sends cumulative chunks, as NeMo's ``--enable_streaming`` does, so the same client path
is measured; ``synthetic_bench_once`` answers once after the whole schedule. ``max_output_len`` caps the
token count; stop words are ignored (the text contains none).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import numpy as np
from pytriton.model_config import Tensor
from pytriton.proxy.types import Request

from webapp.llm.local_models import (
    NEMO2_INPUTS,
    NEMO_OUTPUTS,
    ModelBinding,
    Response,
    ShuttingDownError,
    first_value,
    in_band_error,
    nemo_model_config,
    parse_nemo_request,
    text_column,
)
from webapp.llm.triton_cancellation import cancel_requested, shutting_down

WORDS = ("The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog.")

SYNTHETIC_INPUTS: tuple[Tensor, ...] = (
    Tensor(name="synthetic_ttft_ms", shape=(-1,), dtype=np.float32, optional=True),
    Tensor(name="synthetic_itl_ms", shape=(-1,), dtype=np.float32, optional=True),
    Tensor(name="synthetic_tokens", shape=(-1,), dtype=np.int64, optional=True),
)


@dataclass(frozen=True)
class SyntheticTiming:
    ttft_ms: float = 300.0
    itl_ms: float = 25.0
    tokens: int = 128

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.itl_ms < 0 or self.tokens < 1:
            raise ValueError(f"synthetic timing needs ttft_ms >= 0, itl_ms >= 0 and tokens >= 1, got {self}")

    def for_request(self, request: Request) -> SyntheticTiming:
        """These defaults, overridden by the request's synthetic_* inputs and capped by max_output_len."""
        ttft_ms = first_value(request, "synthetic_ttft_ms")
        itl_ms = first_value(request, "synthetic_itl_ms")
        tokens = first_value(request, "synthetic_tokens")
        timing = replace(
            self,
            ttft_ms=self.ttft_ms if ttft_ms is None else float(ttft_ms),
            itl_ms=self.itl_ms if itl_ms is None else float(itl_ms),
            tokens=self.tokens if tokens is None else int(tokens),
        )
        parsed = parse_nemo_request(request)  # rejects what the real interface rejects
        if first_value(request, "max_output_len") is not None:
            timing = replace(timing, tokens=min(timing.tokens, parsed.sampling.max_tokens))
        return timing

    def token_due_s(self, index: int) -> float:
        """Seconds after the infer function received the request at which token ``index`` is due."""
        return (self.ttft_ms + index * self.itl_ms) / 1000.0


def synthetic_token(index: int) -> str:
    return WORDS[index % len(WORDS)] + " "


def synthetic_text(tokens: int) -> str:
    return "".join(synthetic_token(i) for i in range(tokens))


class SyntheticInferFunctions:
    def __init__(self, timing: SyntheticTiming) -> None:
        self._timing = timing

    async def once(self, requests: list[Request]) -> list[Response]:
        return list(await asyncio.gather(*(self._answer(request) for request in requests)))

    async def _answer(self, request: Request) -> Response:
        rows = len(request["prompts"])
        started = asyncio.get_running_loop().time()
        try:
            timing = self._timing.for_request(request)
        except Exception as error:
            return {"outputs": text_column([in_band_error(error)] * rows)}
        await _sleep_until(started + timing.token_due_s(timing.tokens - 1))
        return {"outputs": text_column([synthetic_text(timing.tokens)] * rows)}

    async def stream(self, requests: list[Request]) -> AsyncIterator[list[Response]]:
        (request,) = requests  # decoupled models run without a dynamic batcher: one request per call
        rows = len(request["prompts"])
        started = asyncio.get_running_loop().time()
        try:
            timing = self._timing.for_request(request)
        except Exception as error:
            yield [{"outputs": text_column([in_band_error(error)] * rows)}]
            return
        text = ""
        for index in range(timing.tokens):
            await _sleep_until(started + timing.token_due_s(index))
            if cancel_requested(request):
                return
            if shutting_down():
                yield [{"outputs": text_column([in_band_error(ShuttingDownError())] * rows)}]
                return
            text += synthetic_token(index)
            yield [{"outputs": text_column([text] * rows)}]


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


def synthetic_bindings(timing: SyntheticTiming) -> list[ModelBinding]:
    functions = SyntheticInferFunctions(timing)
    inputs = NEMO2_INPUTS + SYNTHETIC_INPUTS
    return [
        ModelBinding("synthetic_bench", functions.stream, inputs, NEMO_OUTPUTS, nemo_model_config(decoupled=True)),
        ModelBinding("synthetic_bench_once", functions.once, inputs, NEMO_OUTPUTS, nemo_model_config(decoupled=False)),
    ]
