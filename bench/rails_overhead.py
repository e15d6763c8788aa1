"""What the non-model rails cost a turn, against the raw model stream, on the synthetic Triton model.

Both sides stream the same synthetic_bench reply (known timing) through the same TritonChatModel:
- baseline: the model's stream consumed directly, no rails;
- rails: TurnGuard.stream_turn with the offline rails (abuse classifier, jailbreak, markup; self check off,
  so no rail calls a model), output rails on every streamed chunk.
Reported: p50/p95 turn time and time to first shown token for both, their difference (the overhead), and
the rails' own compute per turn (sum of rail durations from the verdicts).

    python bench/rails_overhead.py --quick
    python bench/rails_overhead.py --turns 60 --triton-url 127.0.0.1:8001   # an already running server
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")

from langchain_core.messages import HumanMessage  # noqa: E402

from bench.servers import free_port  # noqa: E402
from webapp.guard.turn import Delta, TurnFinished, TurnGuard  # noqa: E402
from webapp.llm.local_server import wait_until_ready  # noqa: E402
from webapp.llm.params import GenerationParams  # noqa: E402
from webapp.llm.registry import create_chat_model  # noqa: E402
from webapp.llm.templates import ChatTurn  # noqa: E402
from webapp.settings import Settings  # noqa: E402

MODEL = "synthetic_bench"
PROMPT = "Tell me about foxes and dogs."


@dataclass
class Sample:
    first_ms: float
    total_ms: float
    rails_ms: float = 0.0
    per_rail_ms: dict[str, float] = field(default_factory=dict)


@contextmanager
def local_synthetic_server(ttft_ms: float, itl_ms: float, tokens: int) -> Iterator[str]:
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [
        sys.executable, "-m", "webapp.llm.local_server", "serve", "--models", MODEL,
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--synthetic-ttft-ms", str(ttft_ms), "--synthetic-itl-ms", str(itl_ms),
        "--synthetic-tokens", str(tokens), "--exit-with-parent",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(f"127.0.0.1:{http}", [MODEL], timeout_s=180, server_pid=server.pid)
        yield f"127.0.0.1:{grpc}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


async def baseline_turn(settings: Settings, params: GenerationParams) -> Sample:
    model = create_chat_model(settings).bind(
        temperature=params.temperature, top_p=params.top_p, top_k=params.top_k, max_new_tokens=params.max_new_tokens
    )
    started = time.perf_counter()
    first = None
    async for piece in model.astream([HumanMessage(content=PROMPT)]):
        if first is None and piece.content:
            first = time.perf_counter()
    end = time.perf_counter()
    return Sample(first_ms=((first or end) - started) * 1000, total_ms=(end - started) * 1000)


async def rails_turn(guard: TurnGuard, params: GenerationParams) -> Sample:
    started = time.perf_counter()
    first = None
    finished: TurnFinished | None = None
    async for event in guard.stream_turn([ChatTurn("user", PROMPT)], params):
        if first is None and isinstance(event, Delta):
            first = time.perf_counter()
        if isinstance(event, TurnFinished):
            finished = event
    end = time.perf_counter()
    if finished is None or not finished.verdict.allowed:
        raise RuntimeError(f"the benchmark turn was blocked: {finished.verdict if finished else None}")
    per_rail = {f"{c.name} ({c.stage})": c.duration_ms for c in finished.verdict.checks}
    return Sample(
        first_ms=((first or end) - started) * 1000,
        total_ms=(end - started) * 1000,
        rails_ms=sum(per_rail.values()),
        per_rail_ms=per_rail,
    )


def _p(values: Sequence[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] if len(values) > 1 else values[0]


async def measure(settings: Settings, turns: int) -> tuple[list[Sample], list[Sample]]:
    params = GenerationParams.defaults(settings)
    guard = TurnGuard.load(settings)
    for _ in range(2):  # warm up connections, classifier, NeMo caches
        await baseline_turn(settings, params)
        await rails_turn(guard, params)
    base, rails = [], []
    for _ in range(turns):  # interleaved, so drift on a shared machine hits both sides alike
        base.append(await baseline_turn(settings, params))
        rails.append(await rails_turn(guard, params))
    return base, rails


def report(base: list[Sample], rails: list[Sample], settings: Settings, timing: str) -> str:
    def row(name: str, b: list[float], r: list[float]) -> str:
        return (
            f"| {name} | {_p(b, 50):.1f} | {_p(r, 50):.1f} | {_p(r, 50) - _p(b, 50):+.1f} | "
            f"{_p(b, 95):.1f} | {_p(r, 95):.1f} |"
        )

    lines = [
        f"Synthetic model: {timing}; output chunk {settings.output_chunk_size} tokens, context "
        f"{settings.output_context_size}; {len(base)} turns each; self check off (no model calls in rails).",
        "",
        "| per turn | baseline p50 ms | rails p50 ms | added p50 ms | baseline p95 ms | rails p95 ms |",
        "|---|---|---|---|---|---|",
        row("time to first token shown", [s.first_ms for s in base], [s.first_ms for s in rails]),
        row("whole turn", [s.total_ms for s in base], [s.total_ms for s in rails]),
        "",
        "| rails compute per turn (sum of rail durations) | p50 ms | p95 ms |",
        "|---|---|---|",
        f"| all input + output rail checks | {_p([s.rails_ms for s in rails], 50):.1f} | "
        f"{_p([s.rails_ms for s in rails], 95):.1f} |",
    ]
    for name in rails[0].per_rail_ms:
        values = [s.per_rail_ms.get(name, 0.0) for s in rails]
        lines.append(f"| {name}, summed over chunks | {_p(values, 50):.2f} | {_p(values, 95):.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few turns, short replies (a smoke run)")
    parser.add_argument("--turns", type=int, default=40, help="measured turns per side (default 40)")
    parser.add_argument("--triton-url", default="", help="gRPC host:port of a running server with synthetic_bench")
    parser.add_argument("--ttft-ms", type=float, default=50.0, help="synthetic time to first token")
    parser.add_argument("--itl-ms", type=float, default=5.0, help="synthetic delay between tokens")
    parser.add_argument("--tokens", type=int, default=128, help="synthetic tokens per reply")
    args = parser.parse_args(argv)
    turns, tokens = (8, 48) if args.quick else (args.turns, args.tokens)
    timing = f"time to first token {args.ttft_ms:g} ms, {args.itl_ms:g} ms/token, {tokens} tokens"

    def run(url: str) -> None:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            llm_backend="triton",
            triton_url=url,
            triton_protocol="grpc",
            triton_model=MODEL,
            self_check_rails=False,
            rails_dir=ROOT / "rails",
            max_output_tokens=tokens,
        )
        base, rails = asyncio.run(measure(settings, turns))
        print(report(base, rails, settings, timing))

    if args.triton_url:
        run(args.triton_url)
    else:
        with local_synthetic_server(args.ttft_ms, args.itl_ms, tokens) as url:
            run(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
