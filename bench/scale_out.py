"""Scale-out: the same 64-stream load against 1, 2 and 4 GuardChat processes on PostgreSQL behind nginx.

Each deployment gets a fresh PostgreSQL database (127.0.0.1:5432) with 64 API users and runs the P3 load
(bench/concurrency.py): 64 virtual users, each streaming whole replies back to back from the synthetic Triton
model. Raw tritonclient phases with the same 64 streams alternate with GuardChat's, so each deployment's ratio
is against raw Triton measured next to it. Deployments:

- ``1 process, direct``: plain `guardchat serve`, no proxy (what nginx costs, by difference);
- ``1 worker + nginx``: one `guardchat serve` behind the nginx config `--workers` writes (webapp/proxy.py);
  `--workers 1` itself starts no nginx;
- ``N workers + nginx``: `guardchat serve --workers N` as an operator runs it.

Reported per deployment: replies per second, the ratio to raw Triton, time to first token p50/p99, the
app processes' CPU per reply (all workers together) and nginx's. Triton, the load generator, nginx and every
worker share this machine's cores: once the workers use them all, more workers cannot add throughput.

    python -m bench.scale_out              # 1, 2 and 4 workers (a few minutes)
    python -m bench.scale_out --quick      # 8 streams, 1 and 2 workers: a smoke run
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.cli import bench_args
from bench.clients import RawTriton, StreamTiming, api_client, api_turn, chatml_prompt
from bench.concurrency import STREAMS, Phase, _phase
from bench.db import throwaway_postgres
from bench.report import Figure, Machine, Report
from bench.resources import cpu_seconds
from bench.servers import App, Triton, app_env, free_port, seed_api_users, triton_server
from bench.stats import Dist
from bench.workload import DEFAULT_RAILS, FULL_TIMING, PROMPT, QUICK_TIMING, SYNTHETIC_MODEL

STARTUP_TIMEOUT_S = 600.0
STARTED = re.compile(r"^guardchat: (worker \d+|nginx) \(pid (\d+)\)", re.MULTILINE)


@dataclass
class Deployment:
    label: str
    workers: int
    url: str
    worker_pids: list[int]
    nginx_pid: int | None
    ready_s: float

    def cpu_s(self) -> tuple[float, float]:
        """CPU used so far by the app processes (together) and by nginx (master and its workers)."""
        app = sum(cpu_seconds(pid) for pid in self.worker_pids)
        if self.nginx_pid is None:
            return app, 0.0
        return app, sum(cpu_seconds(pid) for pid in [self.nginx_pid, *_children(self.nginx_pid)])


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, all cores, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


# --- the deployments ----------------------------------------------------------------------------------------


def _spawn(command: list[str], env: dict[str, str] | None, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        # cwd is the data dir, so no developer .env is read; its own session, so only we signal it.
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """SIGTERM to the leader only (the supervisor stops its children itself), then nothing may be left."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait(condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str) -> float:
    """Seconds until ``condition()`` holds; raises if ``process`` exits first or on timeout."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < STARTUP_TIMEOUT_S:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} exited with {process.returncode}\n{tail}")
        with contextlib.suppress(httpx.TransportError):
            if condition():
                return time.perf_counter() - started
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready after {STARTUP_TIMEOUT_S:g} s")


def _readyz(url: str) -> Callable[[], bool]:
    import httpx

    return lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200


@contextlib.contextmanager
def single_process(env: dict[str, str], data_dir: Path, port: int, label: str) -> Iterator[subprocess.Popen[bytes]]:
    log = data_dir / f"{label}.log"
    command = [sys.executable, "-m", "webapp.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = _spawn(command, env, data_dir, log)
    try:
        _wait(_readyz(f"http://127.0.0.1:{port}"), process, log, "guardchat serve")
        yield process
    finally:
        _stop(process, timeout_s=30)


@contextlib.contextmanager
def direct(env: dict[str, str], data_dir: Path) -> Iterator[Deployment]:
    port = free_port()
    started = time.perf_counter()
    with single_process(env, data_dir, port, "direct") as app:
        ready = time.perf_counter() - started
        yield Deployment("1 process, direct", 1, f"http://127.0.0.1:{port}", [app.pid], None, ready)


@contextlib.contextmanager
def one_behind_nginx(env: dict[str, str], data_dir: Path) -> Iterator[Deployment]:
    from webapp import proxy
    from webapp.settings import Settings

    inner, outer = free_port(), free_port()
    started = time.perf_counter()
    with single_process(env, data_dir, inner, "worker") as app:
        settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
        layout = proxy.ProxyLayout.in_data_dir(data_dir)
        proxy.write_config(settings, layout=layout, host="127.0.0.1", port=outer, worker_ports=[inner])
        nginx = _spawn(layout.command(proxy.find_nginx()), None, data_dir, data_dir / "nginx.log")
        try:
            url = f"http://127.0.0.1:{outer}"
            _wait(_readyz(url), nginx, layout.error_log, "nginx")
            ready = time.perf_counter() - started
            yield Deployment("1 worker + nginx", 1, url, [app.pid], nginx.pid, ready)
        finally:
            _stop(nginx, timeout_s=30)


@contextlib.contextmanager
def workers_behind_nginx(env: dict[str, str], data_dir: Path, workers: int) -> Iterator[Deployment]:
    """`guardchat serve --workers N`, ready when it says so."""
    port = free_port()
    log = data_dir / "serve.log"
    command = [sys.executable, "-m", "webapp.cli", "serve", "--workers", str(workers), "--port", str(port)]
    started = time.perf_counter()
    supervisor = _spawn(command, env, data_dir, log)
    try:
        _wait(lambda: "guardchat: ready:" in log.read_text(errors="replace"), supervisor, log, "--workers")
        ready = time.perf_counter() - started
        pids = {name: int(pid) for name, pid in STARTED.findall(log.read_text(errors="replace"))}
        worker_pids = [pid for name, pid in pids.items() if name.startswith("worker")]
        url = f"http://127.0.0.1:{port}"
        yield Deployment(f"{workers} workers + nginx", workers, url, worker_pids, pids["nginx"], ready)
    finally:
        _stop(supervisor)


@contextlib.contextmanager
def deployment(kind: str, triton: Triton, workdir: Path, workers: int) -> Iterator[tuple[Deployment, list[str]]]:
    """A fresh PostgreSQL database with ``STREAMS`` API users, and the deployment ``kind`` on it."""
    from webapp.store.migrate import upgrade

    data_dir = workdir / f"{kind}-{workers}"
    data_dir.mkdir(parents=True)
    with throwaway_postgres() as db_url:
        upgrade(db_url)
        keys = seed_api_users(db_url, STREAMS)
        env = app_env(triton, SYNTHETIC_MODEL, data_dir, free_port(), {"database_url": db_url, **DEFAULT_RAILS})
        if kind == "direct":
            context = direct(env, data_dir)
        elif kind == "nginx" and workers == 1:
            context = one_behind_nginx(env, data_dir)
        else:
            context = workers_behind_nginx(env, data_dir, workers)
        with context as running:
            yield running, keys


# --- the load -------------------------------------------------------------------------------------------------


@dataclass
class Result:
    deployment: Deployment
    raw: Phase = field(default_factory=Phase)
    ours: Phase = field(default_factory=Phase)
    app_cpu_s: float = 0.0
    nginx_cpu_s: float = 0.0
    machine_busy: int = 0  # jiffies, all cores, during the GuardChat phases (other work on the machine included)
    machine_total: int = 0

    @property
    def ratio(self) -> float:
        return self.ours.throughput / self.raw.throughput if self.raw.throughput else 0.0

    @property
    def busy(self) -> float:
        return self.machine_busy / self.machine_total if self.machine_total else 0.0

    def per_reply_ms(self, seconds: float) -> float:
        replies = self.ours.replies + len(self.ours.errors)
        return seconds * 1000 / replies if replies else 0.0


async def measure(
    triton: Triton, running: Deployment, keys: list[str], *, streams: int, turns: int, rounds: int
) -> Result:
    raw = RawTriton(triton.grpc_url)
    prompt = chatml_prompt(PROMPT)
    tokens = triton.timing.tokens
    app = App(
        url=running.url, pid=running.worker_pids[0], ready_s=running.ready_s, api_keys=keys, db_url="", log=Path()
    )
    result = Result(running)
    try:
        async with api_client(app) as client:

            async def raw_one(_: int) -> StreamTiming:
                return await raw.stream(SYNTHETIC_MODEL, prompt, tokens)

            async def ours_one(index: int) -> StreamTiming:
                return await api_turn(client, keys[index], PROMPT, tokens)

            # Warm both paths outside the timing: every worker answers a few turns first (/v1 goes round-robin).
            await raw.stream(SYNTHETIC_MODEL, prompt, tokens)
            await asyncio.gather(*(ours_one(index) for index in range(2 * running.workers)))
            for _ in range(rounds):
                await _phase(streams, turns, raw_one, result.raw)
                app_before, nginx_before = running.cpu_s()
                busy_before, total_before = machine_jiffies()
                await _phase(streams, turns, ours_one, result.ours)
                busy_after, total_after = machine_jiffies()
                app_after, nginx_after = running.cpu_s()
                result.machine_busy += busy_after - busy_before
                result.machine_total += total_after - total_before
                result.app_cpu_s += app_after - app_before
                result.nginx_cpu_s += nginx_after - nginx_before
    finally:
        await raw.close()
    return result


# --- the report -----------------------------------------------------------------------------------------------


def _dist(values: list[float]) -> Dist:
    return Dist.of(values or [0.0])


def _row(result: Result) -> str:
    ours, first, reply = result.ours, _dist(result.ours.first_ms), _dist(result.ours.latency_ms)
    nginx = f"{result.per_reply_ms(result.nginx_cpu_s):.1f} ms" if result.deployment.nginx_pid else "-"
    return (
        f"| {result.deployment.label} | {ours.throughput:.2f} | {result.ratio:.3f} (raw {result.raw.throughput:.2f}) "
        f"| {first.p50:.0f} / {first.p99:.0f} | {reply.p50:.0f} / {reply.p99:.0f} "
        f"| {result.per_reply_ms(result.app_cpu_s):.1f} ms | {nginx} | {result.busy:.0%} | {len(ours.errors)} "
        f"| {result.deployment.ready_s:.0f} s |"
    )


def report(results: list[Result], *, timing: str, streams: int, turns: int, rounds: int) -> Report:
    raw = Phase()
    for result in results:
        raw.replies += result.raw.replies
        raw.seconds += result.raw.seconds
        raw.first_ms += result.raw.first_ms
        raw.latency_ms += result.raw.latency_ms
        raw.errors += result.raw.errors
    first, reply = _dist(raw.first_ms), _dist(raw.latency_ms)
    base = next((r for r in results if r.deployment.label == "1 worker + nginx"), results[0])
    figures = [
        Figure(
            f"Scale-out {r.deployment.label} throughput vs 1 worker + nginx",
            r.ours.throughput / base.ours.throughput if base.ours.throughput else 0.0,
            "ratio",
            "",
            f"{r.ours.throughput:.2f} replies/s",
            f"1 worker + nginx {base.ours.throughput:.2f} replies/s",
            f"vs raw Triton next to it: {r.ratio:.3f}",
        )
        for r in results
        if r is not base and r.deployment.nginx_pid is not None
    ]
    machine = Machine.now()
    lines = [
        f"{timing}; {streams} streams x {turns} replies per phase, {rounds} GuardChat phases per deployment, each "
        "after a raw-Triton phase; PostgreSQL; a fresh database per deployment. "
        f"Machine: {machine.markdown()} (Triton, the load generator, nginx and the workers share it). "
        "Machine CPU busy: all cores, during the GuardChat phases, whatever else runs on the machine included.",
        "",
        "| deployment | replies/s | ratio vs raw Triton (same run) | first token p50 / p99 ms | reply p50 / p99 ms "
        "| app CPU per reply | nginx CPU per reply | machine CPU busy | errors | start-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| raw Triton (tritonclient, all raw phases) | {raw.throughput:.2f} | 1 | {first.p50:.0f} / {first.p99:.0f} "
        f"| {reply.p50:.0f} / {reply.p99:.0f} | | | | {len(raw.errors)} | |",
        *(_row(result) for result in results),
    ]
    errors = sorted({error for result in results for error in result.ours.errors})
    if errors:
        lines += ["", "Errors (first 3 kinds): " + "; ".join(errors[:3])]
    return Report("Scale-out: 1, 2 and 4 workers behind nginx", figures, "\n".join(lines))


def run(workdir: Path, *, quick: bool) -> Report:
    timing = QUICK_TIMING if quick else FULL_TIMING
    streams, turns, rounds = (8, 1, 1) if quick else (STREAMS, 3, 2)
    plan = [("direct", 1), ("nginx", 1), ("nginx", 2)] + ([] if quick else [("nginx", 4)])
    results = []
    with triton_server(timing, workdir) as triton:
        for kind, workers in plan:
            with deployment(kind, triton, workdir, workers) as (running, keys):
                print(f"measuring {running.label} (ready after {running.ready_s:.0f} s)", file=sys.stderr, flush=True)
                load = measure(triton, running, keys, streams=streams, turns=turns, rounds=rounds)
                results.append(asyncio.run(load))
    return report(results, timing=timing.describe(), streams=streams, turns=turns, rounds=rounds)


def main(argv: Sequence[str] | None = None) -> int:
    args = bench_args(__doc__, "8 streams, one reply each, 1 and 2 workers (a smoke run)", argv)
    os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
    with tempfile.TemporaryDirectory(prefix="guardchat-bench-") as tmp:
        print(run(Path(tmp), quick=args.quick).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
