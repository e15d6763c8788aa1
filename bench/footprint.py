"""P5: the app process's memory under the 64-stream load (`rss_mb`), and its start-up time (`ready_s`).

- `rss_mb`: the highest resident memory of the `guardchat serve` process (uvicorn, FastAPI, Gradio, rails,
  classifier) seen while P3's 64 streams run through it. Baseline: the same process idle, after start-up.
- `ready_s`: from spawning `guardchat serve` to `/readyz` answering 200 (database and Triton model reachable).
  Baseline: how long a fresh interpreter takes just to import the app's modules, measured in the same run.

    python -m bench.footprint --quick
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.cli import bench_args
from bench.concurrency import STREAMS, LoadResult
from bench.concurrency import run as run_load
from bench.report import Figure, Report
from bench.servers import App, synthetic_stack
from bench.workload import ROOT

IMPORT_PROBE = (
    "import time; started = time.perf_counter(); import webapp.app, webapp.ui.mount; "
    "print(time.perf_counter() - started)"
)


def import_seconds() -> float:
    """Seconds a fresh interpreter spends importing the app (FastAPI, Gradio, NeMo Guardrails, ...)."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    return float(out.stdout.strip().splitlines()[-1])


def report(app: App, load: LoadResult, imports_s: float | None) -> Report:
    """``imports_s`` None: the import baseline was not measured (quick runs skip it)."""
    imports = f"importing the app: {imports_s:.1f} s" if imports_s is not None else "import time not measured"
    figures = [
        Figure(
            "P5 rss_mb",
            load.peak_rss_mb,
            "MB",
            "<= 700",
            f"peak {load.peak_rss_mb:.0f} MB under {load.streams} streams",
            f"idle {load.idle_rss_mb:.0f} MB",
            f"+{load.peak_rss_mb - load.idle_rss_mb:.0f} MB under load",
        ),
        Figure(
            "P5 ready_s",
            app.ready_s,
            "s",
            "<= 15",
            f"{app.ready_s:.1f} s to /readyz 200",
            imports,
            "`guardchat serve` on a migrated SQLite database, Triton already up",
        ),
    ]
    return Report("P5 footprint", figures, "")


def main(argv: Sequence[str] | None = None) -> int:
    args = bench_args(__doc__, "8 streams instead of 64 (a smoke run)", argv)
    with tempfile.TemporaryDirectory(prefix="guardchat-bench-") as tmp:
        with synthetic_stack(args.quick, Path(tmp), users=STREAMS) as (triton, app):
            _, load = asyncio.run(run_load(triton, app, quick=args.quick))
        print(report(app, load, None if args.quick else import_seconds()).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
