"""Overhead of GuardChat's Triton client against raw `tritonclient` on the same model, in one run.

Starts the local model server (`python -m webapp.llm.local_server serve`) on free ports with the
`synthetic_bench` models set to answer instantly, so the model's own time is ~0 and the ratio shows
only what our client adds (dialect handling, stop scanning, chunk normalisation). Then measures the
local SmolLM2's time to first token and tokens per second through our client.

    python bench/client_overhead.py --quick     # a few seconds of calls
    python bench/client_overhead.py             # more calls, steadier numbers

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python bench/client_overhead.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tritonclient.grpc.aio as grpcclient
import tritonclient.http.aio as httpclient

from bench.servers import free_port
from webapp.llm.dialects import ModelInterface, RequestTensor
from webapp.llm.local_server import wait_until_ready
from webapp.llm.params import GenerationParams
from webapp.llm.templates import ChatTurn, get_template
from webapp.llm.tokens import counter_for
from webapp.llm.triton import TritonChatClient
from webapp.settings import Settings

SYNTHETIC_TOKENS = 32
PROMPT = "<extra_id_0>System\n\n<extra_id_1>User\nBenchmark\n<extra_id_1>Assistant\n"
STOP = ["\n<extra_id_1>", "<extra_id_1>"]


@dataclass(frozen=True)
class Row:
    name: str
    raw_ms: float | None
    ours_ms: float | None
    note: str = ""

    def markdown(self) -> str:
        raw = f"{self.raw_ms:.2f} ms" if self.raw_ms is not None else ""
        ours = f"{self.ours_ms:.2f} ms" if self.ours_ms is not None else ""
        ratio = f"{self.ours_ms / self.raw_ms:.2f}" if self.raw_ms and self.ours_ms else ""
        return f"| {self.name} | {raw} | {ours} | {ratio} | {self.note} |"


async def _paired_medians(
    raw: Callable[[], Awaitable[object]], ours: Callable[[], Awaitable[object]], calls: int, warmup: int
) -> tuple[float, float]:
    """Median ms per call of each, alternating calls (and which goes first) so load drift hits both alike."""
    for _ in range(warmup):
        await raw()
        await ours()
    samples: dict[int, list[float]] = {0: [], 1: []}
    for index in range(calls):
        order = (0, 1) if index % 2 == 0 else (1, 0)
        for which in order:
            started = time.perf_counter()
            await (raw, ours)[which]()
            samples[which].append((time.perf_counter() - started) * 1000)
    return statistics.median(samples[0]), statistics.median(samples[1])


def _raw_inputs(module: object, tensors: Sequence[RequestTensor]) -> list[object]:
    inputs = []
    for tensor in tensors:
        item = module.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)  # type: ignore[attr-defined]
        item.set_data_from_numpy(tensor.array)
        inputs.append(item)
    return inputs


async def _overhead_rows(grpc_url: str, http_url: str, params: GenerationParams, calls: int) -> list[Row]:
    ours = TritonChatClient(url=grpc_url, model_name="synthetic_bench_once")
    ours_stream = TritonChatClient(url=grpc_url, model_name="synthetic_bench")
    ours_http = TritonChatClient(url=http_url, model_name="synthetic_bench_once", protocol="http")
    raw = grpcclient.InferenceServerClient(grpc_url)
    raw_http = httpclient.InferenceServerClient(http_url)
    # The raw baseline sends exactly the tensors our client sends, prepared once outside the timing.
    once: ModelInterface = await ours.interface()
    streamed: ModelInterface = await ours_stream.interface()
    once_tensors = once.request(PROMPT, params, STOP, streaming=False)
    stream_tensors = streamed.request(PROMPT, params, STOP, streaming=True)
    output = [grpcclient.InferRequestedOutput("outputs")]

    async def raw_once() -> str:
        result = await raw.infer("synthetic_bench_once", _raw_inputs(grpcclient, once_tensors), outputs=output)
        return str(result.as_numpy("outputs").ravel()[0].decode())

    async def raw_http_once() -> str:
        result = await raw_http.infer(
            "synthetic_bench_once",
            _raw_inputs(httpclient, once_tensors),
            outputs=[httpclient.InferRequestedOutput("outputs")],
        )
        return str(result.as_numpy("outputs").ravel()[0].decode())

    async def raw_stream() -> int:
        async def requests():  # type: ignore[no-untyped-def]
            yield {
                "model_name": "synthetic_bench",
                "inputs": _raw_inputs(grpcclient, stream_tensors),
                "outputs": output,
            }

        chunks = 0
        async for result, error in raw.stream_infer(requests()):
            if error is not None:
                raise error
            result.as_numpy("outputs").ravel()[0].decode()
            chunks += 1
        return chunks

    async def ours_stream_all() -> int:
        return sum([1 async for _ in ours_stream.stream(PROMPT, params, STOP)])

    try:
        warmup = max(3, calls // 10)
        measured = [
            (
                f"one call, gRPC, non-streaming model ({SYNTHETIC_TOKENS} tokens, instant)",
                raw_once,
                lambda: ours.generate(PROMPT, params, STOP),
                "median per call",
            ),
            (
                f"one call, gRPC, streaming model ({SYNTHETIC_TOKENS} cumulative chunks, instant)",
                raw_stream,
                ours_stream_all,
                "whole stream consumed",
            ),
            (
                "one call, HTTP, non-streaming model",
                raw_http_once,
                lambda: ours_http.generate(PROMPT, params, STOP),
                "median per call",
            ),
        ]
        rows = []
        for name, raw_call, our_call, note in measured:
            raw_ms, ours_ms = await _paired_medians(raw_call, our_call, calls, warmup)
            rows.append(Row(name, raw_ms, ours_ms, note))
    finally:
        await raw.close()
        await raw_http.close()
        for client in (ours, ours_stream, ours_http):
            await client.close()
    return rows


async def _smollm2_rows(grpc_url: str, max_new_tokens: int, runs: int) -> list[Row]:
    settings = Settings(triton_model="smollm2_stream", prompt_template="chatml")
    client = TritonChatClient(url=grpc_url, model_name="smollm2_stream")
    template = get_template("chatml")
    prompt = template.render([ChatTurn("user", "Write a short paragraph about the sea.")])
    params = GenerationParams(temperature=0.0, top_p=1.0, top_k=1, max_new_tokens=max_new_tokens)
    counter = counter_for(settings)
    ttfts, rates = [], []
    try:
        await client.generate(prompt, params.model_copy(update={"max_new_tokens": 4}), template.stop)  # warm-up
        for _ in range(runs):
            started = time.perf_counter()
            first: float | None = None
            parts = []
            async for delta in client.stream(prompt, params, template.stop):
                first = first or time.perf_counter()
                parts.append(delta)
            ended = time.perf_counter()
            assert first is not None, "SmolLM2 sent no text"
            tokens = counter.count("".join(parts))
            ttfts.append((first - started) * 1000)
            if tokens > 1 and ended > first:
                rates.append((tokens - 1) / (ended - first))
    finally:
        await client.close()
    return [
        Row("SmolLM2 time to first token (through our client)", None, statistics.median(ttfts), f"{runs} runs"),
        Row(
            "SmolLM2 decode speed",
            None,
            None,
            f"{statistics.median(rates):.0f} tokens/s (median of {runs}, up to {max_new_tokens} tokens)",
        ),
    ]


def _start_server(http_port: int, grpc_port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "webapp.llm.local_server",
        "serve",
        "--models",
        "synthetic_bench,synthetic_bench_once,smollm2_stream",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--metrics-port",
        str(free_port()),
        "--synthetic-ttft-ms",
        "0",
        "--synthetic-itl-ms",
        "0",
        "--synthetic-tokens",
        str(SYNTHETIC_TOKENS),
        "--log-file",
        str(log),
        "--exit-with-parent",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few calls: a smoke run in seconds")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per measurement")
    args = parser.parse_args(argv)
    calls = args.calls or (20 if args.quick else 300)
    smol_tokens, smol_runs = (16, 2) if args.quick else (128, 5)
    params = GenerationParams(temperature=0.0, top_p=1.0, top_k=1, max_new_tokens=SYNTHETIC_TOKENS)

    http_port, grpc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="guardchat-bench-") as workdir:
        server = _start_server(http_port, grpc_port, Path(workdir) / "triton.log")
        try:
            wait_until_ready(
                f"127.0.0.1:{http_port}",
                ["synthetic_bench", "synthetic_bench_once", "smollm2_stream"],
                180,
                server_pid=server.pid,
            )
            grpc_url, http_url = f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}"
            rows = asyncio.run(_overhead_rows(grpc_url, http_url, params, calls))
            rows += asyncio.run(_smollm2_rows(grpc_url, smol_tokens, smol_runs))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    print(f"\nClient overhead ({calls} timed calls each; model time ~0 so the ratio is our overhead)\n")
    print("| measurement | raw tritonclient | GuardChat client | ratio | note |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
