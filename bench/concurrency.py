"""P3 `concurrency_64`: 64 concurrent streams through GuardChat against 64 raw tritonclient streams.

Each of the 64 virtual users (one account and API key each) streams whole replies back to back. The raw
phase runs the same number of streams on the same model with plain tritonclient. Phases alternate (raw,
GuardChat, raw, GuardChat, ...) so drift on a shared machine hits both. Reported: completed replies per
second through GuardChat ÷ raw, the p99 reply latency GuardChat adds, and the GuardChat errors (anything
that is not a complete reply: HTTP errors, rate limits, blocked or failed turns, exceptions).

Everything runs on one machine: Triton's CPU, the load generator's and GuardChat's compete, which makes the
ratio pessimistic compared with Triton on its own GPU server.

    python -m bench.concurrency --quick
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.cli import bench_args
from bench.clients import RawTriton, StreamTiming, api_client, api_turn, chatml_prompt
from bench.report import Figure, Report
from bench.resources import RssSampler, cpu_seconds, rss_mb
from bench.servers import App, Triton, synthetic_stack
from bench.stats import Dist
from bench.workload import PROMPT, SYNTHETIC_MODEL

STREAMS = 64


@dataclass
class Phase:
    replies: int = 0
    seconds: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.replies / self.seconds if self.seconds else 0.0


@dataclass
class LoadResult:
    streams: int
    turns_per_stream: int
    raw: Phase
    ours: Phase
    idle_rss_mb: float
    peak_rss_mb: float
    app_cpu_s: float = 0.0  # CPU the app process used during the GuardChat phases

    @property
    def app_cpu_ms_per_reply(self) -> float:
        replies = self.ours.replies + len(self.ours.errors)
        return self.app_cpu_s * 1000 / replies if replies else 0.0


async def _phase(streams: int, turns: int, one: Callable[[int], Awaitable[StreamTiming]], into: Phase) -> None:
    async def user(index: int) -> None:
        for _ in range(turns):
            try:
                timing = await one(index)
            except Exception as error:  # counted, not raised: the figure is the error count
                into.errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            if timing.status != "complete":
                into.errors.append(f"{timing.status}: {timing.error}"[:200])
                continue
            into.replies += 1
            into.latency_ms.append(timing.total_s * 1000)
            if timing.first_s is not None:
                into.first_ms.append(timing.first_s * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(user(index) for index in range(streams)))
    into.seconds += time.perf_counter() - started


async def measure(
    triton: Triton, app: App, *, streams: int = STREAMS, turns_per_stream: int, rounds: int
) -> LoadResult:
    if len(app.api_keys) < streams:
        raise ValueError(f"the app has {len(app.api_keys)} API users; {streams} streams need one each")
    raw = RawTriton(triton.grpc_url)
    prompt = chatml_prompt(PROMPT)
    tokens = triton.timing.tokens
    result = LoadResult(streams, turns_per_stream, Phase(), Phase(), 0.0, 0.0)
    try:
        async with api_client(app) as client:
            # Warm both paths (channels, interface detection, NeMo caches) outside the timing.
            await raw.stream(SYNTHETIC_MODEL, prompt, tokens)
            await api_turn(client, app.api_keys[0], PROMPT, tokens)
            result.idle_rss_mb = rss_mb(app.pid)

            async def raw_one(_: int) -> StreamTiming:
                return await raw.stream(SYNTHETIC_MODEL, prompt, tokens)

            async def ours_one(index: int) -> StreamTiming:
                return await api_turn(client, app.api_keys[index], PROMPT, tokens)

            with RssSampler(app.pid) as sampler:
                for _ in range(rounds):
                    await _phase(streams, turns_per_stream, raw_one, result.raw)
                    cpu_before = cpu_seconds(app.pid)
                    await _phase(streams, turns_per_stream, ours_one, result.ours)
                    result.app_cpu_s += cpu_seconds(app.pid) - cpu_before
            result.peak_rss_mb = sampler.peak_mb
    finally:
        await raw.close()
    return result


def report(load: LoadResult, *, timing: str) -> Report:
    raw, ours = load.raw, load.ours
    ratio = ours.throughput / raw.throughput if raw.throughput else 0.0
    ours_lat, raw_lat = Dist.of(ours.latency_ms or [0.0]), Dist.of(raw.latency_ms or [0.0])
    added_p99 = ours_lat.p99 - raw_lat.p99
    figures = [
        Figure(
            "P3 concurrency_64 throughput ratio",
            ratio,
            "ratio",
            ">= 0.9",
            f"{ours.throughput:.2f} replies/s",
            f"raw {raw.throughput:.2f} replies/s",
            f"{load.streams} concurrent streams, {ours.replies + len(ours.errors)} replies each side",
        ),
        Figure(
            "P3 concurrency_64 added_latency_p99_ms",
            added_p99,
            "ms",
            "<= 50",
            f"p99 reply {ours_lat.p99:.0f} ms",
            f"raw p99 reply {raw_lat.p99:.0f} ms",
            f"p50: {ours_lat.p50:.0f} vs {raw_lat.p50:.0f} ms",
        ),
        Figure(
            "P3 concurrency_64 errors",
            len(ours.errors),
            "count",
            "== 0",
            f"{len(ours.errors)} errors",
            f"raw {len(raw.errors)} errors",
            "; ".join(sorted(set(ours.errors))[:3]),
        ),
    ]
    first_ours, first_raw = Dist.of(ours.first_ms or [0.0]), Dist.of(raw.first_ms or [0.0])
    details = "\n".join(
        [
            f"{timing}; {load.streams} streams x {load.turns_per_stream} replies per phase, phases alternating.",
            "",
            "| under load | raw tritonclient | GuardChat API |",
            "|---|---|---|",
            f"| replies per second | {raw.throughput:.2f} | {ours.throughput:.2f} |",
            f"| reply latency p50 / p95 / p99 ms | {raw_lat.p50:.0f} / {raw_lat.p95:.0f} / {raw_lat.p99:.0f} "
            f"| {ours_lat.p50:.0f} / {ours_lat.p95:.0f} / {ours_lat.p99:.0f} |",
            f"| time to first token p50 / p99 ms | {first_raw.p50:.0f} / {first_raw.p99:.0f} "
            f"| {first_ours.p50:.0f} / {first_ours.p99:.0f} |",
            f"| errors | {len(raw.errors)} | {len(ours.errors)} |",
            f"| GuardChat app process CPU per reply | | {load.app_cpu_ms_per_reply:.0f} ms |",
        ]
    )
    return Report("P3 64 concurrent streams", figures, details)


async def run(triton: Triton, app: App, *, quick: bool) -> tuple[Report, LoadResult]:
    load = await measure(
        triton,
        app,
        streams=8 if quick else STREAMS,
        turns_per_stream=1 if quick else 3,
        rounds=1 if quick else 2,
    )
    return report(load, timing=triton.timing.describe()), load


def main(argv: Sequence[str] | None = None) -> int:
    args = bench_args(__doc__, "8 streams, one reply each (a smoke run)", argv)
    with tempfile.TemporaryDirectory(prefix="guardchat-bench-") as tmp:
        with synthetic_stack(args.quick, Path(tmp), users=STREAMS) as (triton, app):
            print(asyncio.run(run(triton, app, quick=args.quick))[0].markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
