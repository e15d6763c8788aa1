"""The Triton server the benchmarks run against: the synthetic models, a self-check guard, optionally SmolLM2.

``synthetic_guard`` answers every self-check prompt "No" (allow) after a fixed delay, so a guarded turn with
the LLM self-check rails on makes a known number of model calls of known duration, and none of them blocks.
(``synthetic_bench`` cannot be the guard: its fox-and-dog text is not a yes/no answer, so the self-check
rails would block every turn, as they should.)

    python -m bench.triton_models --http-port 8000 --grpc-port 8001 --metrics-port 8002 \\
        --models synthetic_bench,synthetic_guard --ttft-ms 100 --itl-ms 10 --tokens 64 --guard-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from pytriton.proxy.types import Request

from webapp.llm.local_models import (
    NEMO2_INPUTS,
    NEMO_OUTPUTS,
    ModelBinding,
    Response,
    in_band_error,
    nemo_model_config,
    parse_nemo_request,
    text_column,
)
from webapp.llm.local_server import (
    LOCAL_MODELS,
    local_model_bindings,
    run_triton,
    stop_on_signals,
    stop_when_parent_exits,
)

GUARD_MODEL = "synthetic_guard"
GUARD_ANSWER = "No"
BENCH_MODELS = (*LOCAL_MODELS, GUARD_MODEL)


class GuardAnswers:
    """Answers ``GUARD_ANSWER`` to every request, ``delay_ms`` after it arrived."""

    def __init__(self, delay_ms: float) -> None:
        self._delay_s = delay_ms / 1000.0

    async def once(self, requests: list[Request]) -> list[Response]:
        return list(await asyncio.gather(*(self._answer(request) for request in requests)))

    async def _answer(self, request: Request) -> Response:
        rows = len(request["prompts"])
        try:
            parse_nemo_request(request)  # rejects what the real NeMo interface rejects
        except Exception as error:
            return {"outputs": text_column([in_band_error(error)] * rows)}
        await asyncio.sleep(self._delay_s)
        return {"outputs": text_column([GUARD_ANSWER] * rows)}


def guard_binding(delay_ms: float) -> ModelBinding:
    answers = GuardAnswers(delay_ms)
    return ModelBinding(GUARD_MODEL, answers.once, NEMO2_INPUTS, NEMO_OUTPUTS, nemo_model_config(decoupled=False))


def bench_bindings(
    models: Sequence[str], *, ttft_ms: float, itl_ms: float, tokens: int, guard_ms: float, threads: int = 1
) -> list[ModelBinding]:
    unknown = sorted(set(models) - set(BENCH_MODELS))
    if unknown:
        raise ValueError(f"unknown benchmark model(s) {', '.join(unknown)}; choose from {', '.join(BENCH_MODELS)}")
    local = [name for name in models if name in LOCAL_MODELS]
    bindings = (
        local_model_bindings(
            local, synthetic_ttft_ms=ttft_ms, synthetic_itl_ms=itl_ms, synthetic_tokens=tokens, threads=threads
        )
        if local
        else []
    )
    if GUARD_MODEL in models:
        bindings.append(guard_binding(guard_ms))
    return bindings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="comma-separated: " + ",".join(BENCH_MODELS))
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--ttft-ms", type=float, required=True, help="synthetic_bench time to first token")
    parser.add_argument("--itl-ms", type=float, required=True, help="synthetic_bench delay between tokens")
    parser.add_argument("--tokens", type=int, required=True, help="synthetic_bench tokens per reply")
    parser.add_argument("--guard-ms", type=float, required=True, help="synthetic_guard time to answer")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads for SmolLM2")
    parser.add_argument("--log-file", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()
    stop_on_signals(stop)
    stop_when_parent_exits(stop)
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    bindings = bench_bindings(
        models,
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        tokens=args.tokens,
        guard_ms=args.guard_ms,
        threads=args.threads,
    )
    run_triton(
        bindings,
        host="127.0.0.1",
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        stop=stop,
        log_file=args.log_file,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
