"""P1 and P3 for the code before a change and after it, on one Triton, in one run.

``--before`` is a checkout of the older commit (``git worktree add /tmp/before <commit>``); its ``webapp``
and ``rails`` run in the app process (PYTHONPATH and GUARDCHAT_RAILS_DIR), with this venv's packages. Each
round starts both apps one after the other, the before app first in the first, third, ... round and the after
app first in the others, so drift on a shared machine hits both alike. Reported per side: P1 (time to first
token over raw tritonclient, p50 of paired differences), the app's CPU per reply one user at a time, and P3
(64 concurrent streams: throughput ratio against raw, app CPU per reply, first token p50/p99).

    python -m bench.before_after --before /tmp/before            # 2 rounds
    python -m bench.before_after --before /tmp/before --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import concurrency, ttft
from bench.servers import Triton, guardchat_app, triton_server
from bench.stats import Dist
from bench.workload import FULL_TIMING, QUICK_TIMING, ROOT


def _side(triton: Triton, workdir: Path, code_root: Path, *, quick: bool, p1: bool = True) -> dict[str, float]:
    streams = 8 if quick else concurrency.STREAMS
    with guardchat_app(triton, workdir, users=streams, code_root=code_root) as app:
        samples = asyncio.run(ttft.measure_synthetic(triton, app, quick=quick)) if p1 else None
        load = asyncio.run(
            concurrency.measure(triton, app, streams=streams, turns_per_stream=1 if quick else 2, rounds=1)
        )
    raw, ours = load.raw, load.ours
    nan = float("nan")
    first, raw_first = Dist.of(ours.first_ms or [0.0]), Dist.of(raw.first_ms or [0.0])
    return {
        "p1_ms": samples.paired(samples.ours_first_ms, samples.raw_first_ms).p50 if samples else nan,
        "cpu_one_ms": statistics.median(samples.app_cpu_ms) if samples else nan,
        "p3_ratio": ours.throughput / raw.throughput if raw.throughput else 0.0,
        "p3_cpu_ms": load.app_cpu_ms_per_reply,
        "p3_errors": float(len(ours.errors)),
        "p3_first_p50_ms": first.p50,
        "p3_first_p99_ms": first.p99,
        "p3_raw_first_p50_ms": raw_first.p50,
        "p3_raw_first_p99_ms": raw_first.p99,
        "ready_s": app.ready_s,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code before the change")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny numbers: proves the benchmark runs")
    parser.add_argument("--p3-only", action="store_true", help="skip P1 (its 60 paired samples take minutes a side)")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="guardchat-ba-") as tmp:
        workdir = Path(tmp)
        with triton_server(QUICK_TIMING if args.quick else FULL_TIMING, workdir) as triton:
            sides = (("before", args.before.resolve()), ("after", ROOT))
            for round_ in range(args.rounds):
                # Every other round the after side goes first, so drift during a round does not favour one side.
                for side, root in sides if round_ % 2 == 0 else sides[::-1]:
                    results[side].append(_side(triton, workdir, root, quick=args.quick, p1=not args.p3_only))
                    print(side, results[side][-1], flush=True)
            timing = triton.timing.describe()
    print(f"\n{timing}; medians over {args.rounds} rounds, before = {args.before}\n")
    print("| measure | before | after |\n|---|---|---|")
    names = {
        "p1_ms": "P1 time-to-first-token overhead p50, ms",
        "cpu_one_ms": "app CPU per reply, one user at a time, ms",
        "p3_ratio": "P3 throughput ratio, 64 streams",
        "p3_cpu_ms": "app CPU per reply, 64 streams, ms",
        "p3_errors": "P3 errors",
        "p3_first_p50_ms": "first token p50 under 64 streams, ms",
        "p3_first_p99_ms": "first token p99 under 64 streams, ms",
        "p3_raw_first_p50_ms": "raw tritonclient first token p50 beside it, ms",
        "p3_raw_first_p99_ms": "raw tritonclient first token p99 beside it, ms",
        "ready_s": "start-up to /readyz, s",
    }
    for key, name in names.items():
        before = statistics.median(r[key] for r in results["before"])
        after = statistics.median(r[key] for r in results["after"])
        print(f"| {name} | {before:.3g} | {after:.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
