"""P1 `ttft_overhead_ms`: time to first token through GuardChat's streaming API minus raw tritonclient's.

GuardChat runs its default rails without the LLM self-check rails. Both sides ask the same model for the
same reply, alternating which goes first so load drift on a shared machine hits both alike; the figure is
the p50 (and p95) of the paired differences.

Output rails check each reply chunk before anyone sees it, so GuardChat's first token cannot leave before
the model has produced the first chunk (``GUARDCHAT_OUTPUT_FIRST_CHUNK_SIZE`` tokens, 1 by default; later
chunks double up to ``GUARDCHAT_OUTPUT_CHUNK_SIZE``). The raw stream's time to that token, measured in the
same run, splits the overhead into that wait, set by the first chunk's size and the model's speed, and
GuardChat's own work.

    python -m bench.ttft --quick
    python -m bench.ttft --smollm2     # plus the realistic run on the local SmolLM2
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cli import bench_args
from bench.clients import RawTriton, api_client, api_turn, chatml_prompt
from bench.report import Figure, Report
from bench.resources import cpu_seconds
from bench.servers import App, Triton, guardchat_app, synthetic_stack, triton_server
from bench.stats import Dist
from bench.workload import PROMPT, SMOLLM2_MODEL, SYNTHETIC_MODEL, Timing
from webapp.settings import Settings

CHATML_STOP = ("<|im_end|>",)
# The first output-rail chunk: the first token GuardChat may show is the last token of this chunk.
FIRST_CHUNK_TOKENS: int = Settings.model_fields["output_first_chunk_size"].default


@dataclass(frozen=True)
class TtftSamples:
    raw_first_ms: list[float]
    raw_chunk_ms: list[float]  # raw time to the token that completes the first output-rail chunk
    raw_total_ms: list[float]
    ours_first_ms: list[float]
    ours_total_ms: list[float]
    app_cpu_ms: list[float]  # CPU the app process used per GuardChat turn

    def paired(self, ours: list[float], raw: list[float]) -> Dist:
        return Dist.of([a - b for a, b in zip(ours, raw, strict=True)])


async def measure(
    triton: Triton,
    app: App,
    *,
    model: str,
    samples: int,
    warmup: int,
    max_tokens: int,
    chunk_tokens: int = FIRST_CHUNK_TOKENS,
    stop: Sequence[str] = (),
) -> TtftSamples:
    raw = RawTriton(triton.grpc_url)
    prompt = chatml_prompt(PROMPT)
    result = TtftSamples([], [], [], [], [], [])
    try:
        async with api_client(app) as client:
            key = app.api_keys[0]
            for index in range(warmup + samples):
                order = ("raw", "ours") if index % 2 == 0 else ("ours", "raw")
                timings = {}
                for side in order:
                    if side == "raw":
                        timings[side] = await raw.stream(model, prompt, max_tokens, stop)
                    else:
                        cpu_before = cpu_seconds(app.pid)
                        timings[side] = await api_turn(client, key, PROMPT, max_tokens)
                        app_cpu_ms = (cpu_seconds(app.pid) - cpu_before) * 1000
                theirs, ours = timings["raw"], timings["ours"]
                if ours.status != "complete" or ours.first_s is None:
                    raise RuntimeError(f"the GuardChat turn did not complete: {ours.status} {ours.error}")
                if theirs.first_s is None:
                    raise RuntimeError("the raw stream sent no text")
                if index < warmup:
                    continue
                # Chunks are cumulative, one token each: chunk i carries token i.
                held = theirs.chunk_s[min(chunk_tokens, len(theirs.chunk_s)) - 1]
                result.raw_first_ms.append(theirs.first_s * 1000)
                result.raw_chunk_ms.append(held * 1000)
                result.raw_total_ms.append(theirs.total_s * 1000)
                result.ours_first_ms.append(ours.first_s * 1000)
                result.ours_total_ms.append(ours.total_s * 1000)
                result.app_cpu_ms.append(app_cpu_ms)
    finally:
        await raw.close()
    return result


def _row(name: str, values: Sequence[float]) -> str:
    dist = Dist.of(values)
    return f"| {name} | {dist.p50:.1f} | {dist.p95:.1f} |"


def report(samples: TtftSamples, *, timing: str, chunk_tokens: int) -> Report:
    overhead = samples.paired(samples.ours_first_ms, samples.raw_first_ms)
    own_work = samples.paired(samples.ours_first_ms, samples.raw_chunk_ms)
    wait = samples.paired(samples.raw_chunk_ms, samples.raw_first_ms)
    ours, raw = Dist.of(samples.ours_first_ms), Dist.of(samples.raw_first_ms)
    figures = [
        Figure(
            "P1 ttft_overhead_ms p50",
            overhead.p50,
            "ms",
            "<= 15",
            f"TTFT {ours.p50:.1f} ms",
            f"raw TTFT {raw.p50:.1f} ms",
            f"first checked chunk: {chunk_tokens} token(s), generated {wait.p50:.0f} ms after the first; "
            f"GuardChat's own work: {own_work.p50:.1f} ms",
        ),
        Figure(
            "P1 ttft_overhead_ms p95",
            overhead.p95,
            "ms",
            "",
            f"TTFT {ours.p95:.1f} ms",
            f"raw TTFT {raw.p95:.1f} ms",
            f"GuardChat's own work p95: {own_work.p95:.1f} ms",
        ),
        Figure(
            "P1 ttft_own_work_ms p50",
            own_work.p50,
            "ms",
            "",
            f"TTFT {ours.p50:.1f} ms",
            f"raw time to token {chunk_tokens} {Dist.of(samples.raw_chunk_ms).p50:.1f} ms",
            "TTFT minus the raw stream's time to the token that completes the first checked chunk",
        ),
    ]
    differences = [o - r for o, r in zip(samples.ours_first_ms, samples.raw_first_ms, strict=True)]
    own = [o - r for o, r in zip(samples.ours_first_ms, samples.raw_chunk_ms, strict=True)]
    details = "\n".join(
        [
            f"{timing}; {len(samples.ours_first_ms)} paired samples, sides alternating; "
            f"output rails check a first chunk of {chunk_tokens} token(s), then chunks doubling up to "
            f"{Settings.model_fields['output_chunk_size'].default}.",
            "",
            "| per turn | p50 ms | p95 ms |",
            "|---|---|---|",
            _row("raw tritonclient: time to first token", samples.raw_first_ms),
            _row(f"raw tritonclient: time to token {chunk_tokens} (first chunk complete)", samples.raw_chunk_ms),
            _row("GuardChat API: time to first token", samples.ours_first_ms),
            _row("difference (P1 ttft_overhead_ms)", differences),
            _row("difference after the first chunk is generated (own work)", own),
            _row("raw tritonclient: whole reply", samples.raw_total_ms),
            _row("GuardChat API: whole reply", samples.ours_total_ms),
            _row("GuardChat app process CPU during the turn, idle polling included", samples.app_cpu_ms),
        ]
    )
    return Report("P1 time to first token", figures, details)


async def measure_synthetic(triton: Triton, app: App, *, quick: bool) -> TtftSamples:
    """P1's samples on the synthetic model (bench/before_after.py takes them for two checkouts)."""
    return await measure(
        triton,
        app,
        model=SYNTHETIC_MODEL,
        samples=6 if quick else 60,
        warmup=2 if quick else 5,
        max_tokens=triton.timing.tokens,
    )


async def run(triton: Triton, app: App, *, quick: bool) -> Report:
    samples = await measure_synthetic(triton, app, quick=quick)
    return report(samples, timing=triton.timing.describe(), chunk_tokens=FIRST_CHUNK_TOKENS)


def smollm2_report(workdir: Path, *, quick: bool) -> Report:
    """The realistic run: the same comparison on the local SmolLM2 (greedy, so both sides get one reply)."""
    max_tokens = 16 if quick else 64
    timing = Timing(ttft_ms=0, itl_ms=0, tokens=1, guard_ms=0)  # unused: SmolLM2 has its own speed
    with (
        triton_server(timing, workdir, models=(SMOLLM2_MODEL,)) as triton,
        guardchat_app(triton, workdir, model=SMOLLM2_MODEL) as app,
    ):
        samples = asyncio.run(
            measure(
                triton,
                app,
                model=SMOLLM2_MODEL,
                samples=3 if quick else 15,
                warmup=1 if quick else 2,
                max_tokens=max_tokens,
                stop=CHATML_STOP,
            )
        )
    result = report(
        samples,
        timing=f"SmolLM2-135M (Q4_1, llama.cpp on CPU) behind Triton, greedy, up to {max_tokens} tokens",
        chunk_tokens=FIRST_CHUNK_TOKENS,
    )
    for index, figure in enumerate(result.figures):
        result.figures[index] = Figure(
            figure.name.replace("P1 ", "P1 (SmolLM2) "),
            figure.value,
            figure.unit,
            "",
            figure.guardchat,
            figure.baseline,
            figure.note,
        )
    result.title = "P1 on the local SmolLM2 (realistic run)"
    result.details += (
        "\n\nSmolLM2 runs on the same 2 CPU cores as everything else, so its own speed varies from reply to "
        "reply by more than GuardChat's own work: the two sides' times to the first token are separate generations."
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = bench_args(
        __doc__, "few samples, short replies (a smoke run)", argv, smollm2="also run on the local SmolLM2"
    )
    with tempfile.TemporaryDirectory(prefix="guardchat-bench-") as tmp:
        workdir = Path(tmp)
        with synthetic_stack(args.quick, workdir) as (triton, app):
            print(asyncio.run(run(triton, app, quick=args.quick)).markdown())
        if args.smollm2:
            print(smollm2_report(workdir, quick=args.quick).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
