"""`make bench`: run every benchmark and write bench/RESULTS.md.

Each figure compares GuardChat with its baseline measured in the same run (see each module's docstring):
P1 bench/ttft.py, P2 bench/turn_ratio.py, P3 bench/concurrency.py, P4 bench/db.py, P5 bench/footprint.py,
Rails bench/rails_overhead.py, and P1 again on the local SmolLM2 for one realistic run. The hand-written
bench/BEFORE_AFTER.md (the profiled optimisation, with its before and after numbers) is appended.

    python -m bench.run_all                      # the full run (tens of minutes on 2 busy cores)
    python -m bench.run_all --quick --output /tmp/RESULTS.md --no-smollm2   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import concurrency, db, footprint, ttft, turn_ratio
from bench.report import FIGURE_HEADER, Figure, Machine, Report, utc_now
from bench.servers import Triton, guardchat_app, triton_server
from bench.stats import Dist
from bench.workload import FULL_TIMING, QUICK_TIMING, ROOT, SYNTHETIC_MODEL

BENCH_DIR = Path(__file__).resolve().parent
BEFORE_AFTER = BENCH_DIR / "BEFORE_AFTER.md"


def rails_report(triton: Triton, *, quick: bool) -> Report:
    """Per-rail p50 and the rails' non-model cost per turn, from bench/rails_overhead.py's measurement."""
    from bench.rails_overhead import measure
    from webapp.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        llm_backend="triton",
        triton_url=triton.grpc_url,
        triton_protocol="grpc",
        triton_model=SYNTHETIC_MODEL,
        self_check_rails=False,
        rails_dir=ROOT / "rails",
        max_output_tokens=triton.timing.tokens,
    )
    base, rails = asyncio.run(measure(settings, 6 if quick else 40))
    compute = Dist.of([s.rails_ms for s in rails])
    added = Dist.of([r.total_ms - b.total_ms for r, b in zip(rails, base, strict=True)])
    base_total, rails_total = Dist.of([s.total_ms for s in base]), Dist.of([s.total_ms for s in rails])
    figures = [
        Figure(
            "Rails non_model_overhead_ms p50",
            added.p50,
            "ms",
            "",
            f"turn with rails {rails_total.p50:.0f} ms",
            f"same stream, no rails {base_total.p50:.0f} ms",
            f"rail actions' own compute: {compute.p50:.1f} ms; the rest is the rails runner and chunking",
        )
    ]
    for name in rails[0].per_rail_ms:
        values = Dist.of([s.per_rail_ms.get(name, 0.0) for s in rails])
        figures.append(
            Figure(
                f"Rails rail_p50_ms {name}",
                values.p50,
                "ms",
                "",
                f"p95 {values.p95:.2f} ms",
                "",
                "summed over the reply's chunks" if "(output)" in name else "",
            )
        )
    details = (
        f"{triton.timing.describe()}; {len(rails)} turns each side, interleaved, through TurnGuard "
        "(offline rails, self check off: no rail calls a model)."
    )
    return Report("Rails", figures, details)


def collect(workdir: Path, *, quick: bool, smollm2: bool) -> list[Report]:
    timing = QUICK_TIMING if quick else FULL_TIMING
    streams = 8 if quick else concurrency.STREAMS
    with triton_server(timing, workdir) as triton:
        with guardchat_app(triton, workdir, users=streams) as app:
            p1 = asyncio.run(ttft.run(triton, app, quick=quick))
            p3, load = asyncio.run(concurrency.run(triton, app, quick=quick))
        p2 = asyncio.run(turn_ratio.run(triton, workdir, quick=quick))
        rails = rails_report(triton, quick=quick)
    p5 = footprint.report(app, load, None if quick else footprint.import_seconds())
    p4 = db.run(workdir, quick=quick)
    reports = [p1, p2, p3, p4, p5, rails]
    if smollm2:
        reports.append(ttft.smollm2_report(workdir, quick=quick))
    return reports


def render(reports: Sequence[Report], *, before: Machine, after: Machine, minutes: float, quick: bool) -> str:
    figures = [figure for report in reports for figure in report.figures]
    lines = [
        "# GuardChat benchmarks",
        "",
        f"Run {utc_now()} ({minutes:.0f} min{', quick smoke run: tiny numbers' if quick else ''}) by "
        "`make bench` (`python -m bench.run_all`).",
        "",
        f"- Machine at the start: {before.markdown()}.",
        f"- Load average at the end: {', '.join(f'{x:.1f}' for x in after.load)}.",
        "- The machine is shared with other work; absolute times move with its load. Every figure is GuardChat "
        "against a baseline measured in the same run, interleaved where possible, so the comparison holds.",
        "",
        "## Figures",
        "",
        FIGURE_HEADER,
        *(figure.markdown() for figure in figures),
        "",
        *(report.markdown(with_table=False) for report in reports if report.details),
    ]
    if BEFORE_AFTER.exists():
        lines += [BEFORE_AFTER.read_text(encoding="utf-8").strip(), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny numbers: proves every benchmark still runs")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md", help="where to write the results")
    parser.add_argument("--no-smollm2", action="store_true", help="skip the realistic run on the local SmolLM2")
    args = parser.parse_args(argv)
    before = Machine.now()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="guardchat-bench-") as tmp:
        reports = collect(Path(tmp), quick=args.quick, smollm2=not args.no_smollm2)
    text = render(
        reports, before=before, after=Machine.now(), minutes=(time.perf_counter() - started) / 60, quick=args.quick
    )
    args.output.write_text(text, encoding="utf-8")
    print(text)
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
