"""`make bench` still runs: every benchmark once, with tiny numbers. Nothing here is timed.

The run happens in a subprocess, exactly as `make bench` starts it, so its servers, event loops and
module caches stay out of the test process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRACKED = (
    "P1 ttft_overhead_ms p50",
    "P1 ttft_overhead_ms p95",
    "P2 turn_ratio p50",
    "P3 concurrency_64 throughput ratio",
    "P3 concurrency_64 added_latency_p99_ms",
    "P3 concurrency_64 errors",
    "P4 db_open_conversation_ms (SQLite)",
    "P4 db_queue_page_ms (SQLite)",
    "P5 rss_mb",
    "P5 ready_s",
    "Rails non_model_overhead_ms p50",
)


def _figure_values(results: str) -> dict[str, str]:
    rows = [line.split("|") for line in results.splitlines() if line.startswith("| P") or line.startswith("| Rails")]
    return {cells[1].strip(): cells[2].strip() for cells in rows}


def test_every_benchmark_runs_and_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick", "--no-smollm2", "--output", str(output)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # a hang guard only: the run takes about a minute on an idle 2-core machine
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = output.read_text(encoding="utf-8")
    assert re.search(r"Machine at the start: \d+ cores .*GB memory", results), "the machine is not described"
    values = _figure_values(results)
    for name in TRACKED:
        assert name in values, f"{name} is missing from RESULTS.md"
        float(values[name].split()[0])  # a measured number, not an error message
    assert values["P3 concurrency_64 errors"] == "0", "turns failed under concurrent load"
