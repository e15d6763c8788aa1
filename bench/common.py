"""What every benchmark shares: the Triton and GuardChat subprocesses, the raw baseline client, statistics,
the machine description and the shape of a reported figure."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")

import httpx

from webapp.llm.local_server import wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
SYNTHETIC_MODEL = "synthetic_bench"
GUARD_MODEL = "synthetic_guard"  # bench/triton_models.py: answers every self check "No"
SMOLLM2_MODEL = "smollm2_stream"
PROMPT = "Tell me about foxes and dogs."
# Both sides sample the same way (the synthetic model ignores it; SmolLM2 then writes the same reply).
GREEDY: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0, "top_k": 1}
GREEDY_ENV = {"temperature": "0", "top_p": "1", "top_k": "1"}
# "The default rails minus the LLM self-check rails": what P1, P3 and P5 run.
DEFAULT_RAILS = {"self_check_rails": "false", **GREEDY_ENV}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- statistics ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (like numpy's default); one value is its own percentile."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    position = (len(ordered) - 1) * pct / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Dist:
    """p50/p95/p99 of a sample, in the unit of the sample."""

    p50: float
    p95: float
    p99: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Dist:
        return cls(percentile(values, 50), percentile(values, 95), percentile(values, 99), len(values))


# --- reporting ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One tracked number: ``name`` never changes, ``value`` compares GuardChat with its baseline."""

    name: str
    value: float
    unit: str
    target: str  # e.g. "<= 15"
    guardchat: str  # what GuardChat measured, formatted
    baseline: str  # the baseline, measured in the same run, formatted
    note: str = ""

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        op, _, bound = self.target.partition(" ")
        limit = float(bound)
        return {"<=": self.value <= limit, ">=": self.value >= limit, "==": self.value == limit}[op]

    def markdown(self) -> str:
        met = {True: "yes", False: "**no**", None: ""}[self.met]
        digits = 3 if self.unit == "ratio" else 1
        value = f"{self.value:.{digits}f}" if self.unit != "count" else f"{self.value:.0f}"
        unit = "" if self.unit in ("ratio", "count") else f" {self.unit}"
        return (
            f"| {self.name} | {value}{unit} | {self.target} | {met} | {self.guardchat} | {self.baseline} "
            f"| {self.note} |"
        )


FIGURE_HEADER = (
    "| figure | value | target | met | GuardChat | baseline (same run) | note |\n|---|---|---|---|---|---|---|"
)


@dataclass
class Report:
    """What one benchmark module measured: its figures and a markdown section with the details."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    details: str = ""

    def markdown(self, *, with_table: bool = True) -> str:
        rows = "\n".join(f.markdown() for f in self.figures)
        table = f"{FIGURE_HEADER}\n{rows}\n\n" if self.figures and with_table else ""
        return f"## {self.title}\n\n{table}{self.details}\n"


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_gb: float
    cpu: str
    python: str
    load: tuple[float, float, float]

    @classmethod
    def now(cls) -> Machine:
        meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
        total_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0)
        cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "")
        return cls(
            cores=os.cpu_count() or 0,
            memory_gb=total_kb / 1024 / 1024,
            cpu=cpu or platform.processor() or platform.machine(),
            python=platform.python_version(),
            load=os.getloadavg(),
        )

    def markdown(self) -> str:
        load = ", ".join(f"{x:.1f}" for x in self.load)
        return (
            f"{self.cores} cores ({self.cpu}), {self.memory_gb:.1f} GB memory, Python {self.python}, "
            f"{platform.system()} {platform.release()}; load average {load} (1, 5, 15 min)"
        )


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- processes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """The synthetic model's known timing, and the guard model's answer time."""

    ttft_ms: float
    itl_ms: float
    tokens: int
    guard_ms: float

    def describe(self) -> str:
        return (
            f"synthetic model: first token after {self.ttft_ms:g} ms, then {self.itl_ms:g} ms per token, "
            f"{self.tokens} tokens; synthetic guard answers after {self.guard_ms:g} ms"
        )


# One timing for every synthetic figure: a 70B-class deployment (100 ms to first token, 40 tokens/s per stream).
FULL_TIMING = Timing(ttft_ms=100, itl_ms=25, tokens=64, guard_ms=50)
QUICK_TIMING = Timing(ttft_ms=5, itl_ms=1, tokens=40, guard_ms=5)


def _stop_group(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # The group may outlive its leader (Triton's model stubs): make sure nothing is left.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_bytes().decode("utf-8", errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Triton:
    grpc_url: str
    http_url: str
    models: tuple[str, ...]
    timing: Timing


@contextlib.contextmanager
def triton_server(
    timing: Timing,
    workdir: Path,
    *,
    models: Sequence[str] = (SYNTHETIC_MODEL, GUARD_MODEL),
    startup_timeout_s: float = 300.0,
) -> Iterator[Triton]:
    """A real Triton (pytriton, CPU) with the benchmark models, on free ports, in its own process group."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    log = workdir / f"triton-{grpc}.log"
    command = [
        sys.executable, "-m", "bench.triton_models", "--models", ",".join(models),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--ttft-ms", str(timing.ttft_ms), "--itl-ms", str(timing.itl_ms), "--tokens", str(timing.tokens),
        "--guard-ms", str(timing.guard_ms),
    ]  # fmt: skip
    with log.open("ab") as out:
        # Tensors travel over the socket, not shared memory, so a killed server leaves no segments behind.
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTRITON_NO_TENSORSTORE": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_until_ready(f"127.0.0.1:{http}", list(models), startup_timeout_s, server_pid=process.pid)
        except Exception as error:
            raise RuntimeError(f"the benchmark Triton did not start: {error}\n{_log_tail(log)}") from error
        yield Triton(f"127.0.0.1:{grpc}", f"127.0.0.1:{http}", tuple(models), timing)
    finally:
        _stop_group(process)


@dataclass
class App:
    url: str
    pid: int
    ready_s: float  # from spawning `guardchat serve` to /readyz answering 200
    api_keys: list[str]
    db_url: str
    log: Path


def app_env(
    triton: Triton, model: str, data_dir: Path, port: int, settings: Mapping[str, str], code_root: Path = ROOT
) -> dict[str, str]:
    """The process environment for a GuardChat app: our GUARDCHAT_* only (no developer .env, no leftovers).

    ``code_root`` is the checkout whose ``webapp`` and ``rails`` run: another one (a worktree of an older
    commit) measures the code before a change against the code after it, in the same run.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDCHAT_")}
    if code_root != ROOT:
        env["PYTHONPATH"] = str(code_root)
    env.update(
        {
            "GUARDCHAT_DATA_DIR": str(data_dir),
            "GUARDCHAT_RAILS_DIR": str(code_root / "rails"),
            "GUARDCHAT_TRITON_URL": triton.grpc_url,
            "GUARDCHAT_TRITON_PROTOCOL": "grpc",
            "GUARDCHAT_TRITON_MODEL": model,
            "GUARDCHAT_HOST": "127.0.0.1",
            "GUARDCHAT_PORT": str(port),
            # The load benchmarks run many turns per user per minute, on purpose.
            "GUARDCHAT_RATE_LIMIT_PER_MINUTE": "1000000",
            "GUARDCHAT_MAX_CONCURRENT_STREAMS": "1000",
            "GUARDCHAT_MAX_OUTPUT_TOKENS_LIMIT": "4096",
        }
    )
    env.update({f"GUARDCHAT_{key.upper()}": value for key, value in settings.items()})
    return env


def bench_args(doc: str | None, help_text: str, argv: Sequence[str] | None = None, **extra: str) -> Any:
    """A benchmark's command line: ``--quick`` (a smoke run) plus ``extra`` boolean flags (name -> help)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=help_text)
    for name, text in extra.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
    return parser.parse_args(argv)


@contextlib.contextmanager
def synthetic_stack(quick: bool, workdir: Path, *, users: int = 1) -> Iterator[tuple[Triton, App]]:
    """The synthetic Triton (quick or full timing) and a GuardChat app on it, in ``workdir``."""
    with (
        triton_server(QUICK_TIMING if quick else FULL_TIMING, workdir) as triton,
        guardchat_app(triton, workdir, users=users) as app,
    ):
        yield triton, app


def seed_api_users(db_url: str, count: int) -> list[str]:
    """``count`` users with one API key each (one password hash shared: argon2 per user is slow and unmeasured)."""
    from webapp.store import api_keys, users
    from webapp.store.engine import Database
    from webapp.store.models import User

    db = Database(db_url)
    try:
        keys = []
        with db.write() as session:
            first = users.create_user(session, username="bench0", password=uuid.uuid4().hex)
            people = [first]
            for index in range(1, count):
                person = User(username=f"bench{index}", password_hash=first.password_hash, role="user")
                session.add(person)
                people.append(person)
            session.flush()
            for person in people:
                keys.append(api_keys.create_api_key(session, user=person, name="bench")[1])
        return keys
    finally:
        db.dispose()


@contextlib.contextmanager
def guardchat_app(
    triton: Triton,
    workdir: Path,
    *,
    model: str = SYNTHETIC_MODEL,
    users: int = 1,
    settings: Mapping[str, str] = DEFAULT_RAILS,
    startup_timeout_s: float = 180.0,
    code_root: Path = ROOT,
) -> Iterator[App]:
    """`guardchat serve` (uvicorn, FastAPI, Gradio, rails) in a subprocess on a fresh, migrated SQLite file.

    ``settings`` are extra GUARDCHAT_* values (lower-case names without the prefix).
    """
    from webapp.store.migrate import upgrade

    port = free_port()
    data_dir = workdir / f"app-{port}"
    data_dir.mkdir(parents=True)
    db_url = f"sqlite:///{data_dir / 'guardchat.db'}"
    upgrade(db_url)
    keys = seed_api_users(db_url, users)
    log = data_dir / "app.log"
    env = app_env(triton, model, data_dir, port, {"database_url": db_url, **settings}, code_root)
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        started = time.perf_counter()
        # cwd is the data dir, so a developer's .env is never read.
        process = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "serve"],
            cwd=data_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        ready_s = _wait_ready(url, process, started, startup_timeout_s, log)
        yield App(url=url, pid=process.pid, ready_s=ready_s, api_keys=keys, db_url=db_url, log=log)
    finally:
        _stop_group(process, timeout_s=15)


def _wait_ready(url: str, process: subprocess.Popen[bytes], started: float, timeout_s: float, log: Path) -> float:
    deadline = started + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"guardchat serve exited with {process.returncode}\n{_log_tail(log)}")
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"guardchat serve was not ready after {timeout_s:g} s\n{_log_tail(log)}")


# --- memory --------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of one process, in MB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return kb / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples a process's RSS on a thread while in use; ``peak_mb`` is the highest seen."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb(self.pid))


# --- the two clients: raw tritonclient (baseline) and GuardChat's API -------------------------------------


@dataclass(frozen=True)
class StreamTiming:
    """Seconds from sending the request: to the first text, to each chunk, to the end."""

    first_s: float | None
    chunk_s: tuple[float, ...]
    total_s: float
    status: str = "complete"
    message_id: int | None = None
    error: str | None = None


class RawTriton:
    """The baseline: plain ``tritonclient.grpc.aio`` calls with the tensors GuardChat's client would send.

    The tensors are built once, outside the timing, by GuardChat's own interface detection, so both sides
    ask the model for exactly the same thing.
    """

    def __init__(self, grpc_url: str) -> None:
        import tritonclient.grpc.aio as grpcclient

        self._grpc = grpcclient
        self.url = grpc_url
        self.client = grpcclient.InferenceServerClient(grpc_url)
        self._tensors: dict[tuple[str, str, int, tuple[str, ...]], list[Any]] = {}

    async def tensors(self, model: str, prompt: str, max_new_tokens: int, stop: Sequence[str] = ()) -> list[Any]:
        key = (model, prompt, max_new_tokens, tuple(stop))
        if key not in self._tensors:
            from webapp.llm.params import GenerationParams
            from webapp.llm.triton import TritonChatClient

            ours = TritonChatClient(url=self.url, model_name=model)
            try:
                interface = await ours.interface()
            finally:
                await ours.close()
            params = GenerationParams(**GREEDY, max_new_tokens=max_new_tokens)
            self._tensors[key] = interface.request(prompt, params, stop, streaming=interface.decoupled)
        return self._tensors[key]

    def _inputs(self, tensors: Sequence[Any]) -> list[Any]:
        inputs = []
        for tensor in tensors:
            item = self._grpc.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)
            item.set_data_from_numpy(tensor.array)
            inputs.append(item)
        return inputs

    async def stream(self, model: str, prompt: str, max_new_tokens: int, stop: Sequence[str] = ()) -> StreamTiming:
        tensors = await self.tensors(model, prompt, max_new_tokens, stop)
        request = {
            "model_name": model,
            "inputs": self._inputs(tensors),
            "outputs": [self._grpc.InferRequestedOutput("outputs")],
            "request_id": uuid.uuid4().hex,
        }

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield request

        started = time.perf_counter()
        first: float | None = None
        chunks: list[float] = []
        async for result, error in self.client.stream_infer(requests()):
            if error is not None:
                raise error
            text = result.as_numpy("outputs").ravel()[0]
            now = time.perf_counter() - started
            chunks.append(now)
            if first is None and text:
                first = now
        return StreamTiming(first_s=first, chunk_s=tuple(chunks), total_s=time.perf_counter() - started)

    async def infer(self, model: str, prompt: str, max_new_tokens: int) -> float:
        tensors = await self.tensors(model, prompt, max_new_tokens)
        started = time.perf_counter()
        await self.client.infer(model, self._inputs(tensors), outputs=[self._grpc.InferRequestedOutput("outputs")])
        return time.perf_counter() - started

    async def close(self) -> None:
        await self.client.close()


def api_client(app: App) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=app.url,
        timeout=httpx.Timeout(120.0),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
    )


async def api_turn(client: httpx.AsyncClient, api_key: str, text: str, max_tokens: int) -> StreamTiming:
    """One streamed turn through GuardChat's OpenAI-compatible API, timed from sending the request."""
    body = {"model": "bench", "messages": [{"role": "user", "content": text}], "stream": True, "max_tokens": max_tokens}
    started = time.perf_counter()
    first: float | None = None
    chunks: list[float] = []
    status, message_id, error = "error", None, None
    async with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {api_key}"}
    ) as response:
        if response.status_code != 200:
            detail = (await response.aread()).decode(errors="replace")[:200]
            return StreamTiming(None, (), time.perf_counter() - started, "http_error", None, detail)
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                error = str(event["error"].get("message"))
                continue
            now = time.perf_counter() - started
            if event["choices"][0]["delta"].get("content"):
                chunks.append(now)
                if first is None:
                    first = now
            if "guardchat" in event:
                status = event["guardchat"]["status"]
                message_id = event["guardchat"]["message_id"]
                error = error or event["guardchat"].get("error")
    return StreamTiming(first, tuple(chunks), time.perf_counter() - started, status, message_id, error)


def chatml_prompt(text: str) -> str:
    """The prompt GuardChat sends the model for a first turn ``text`` (no system prompt)."""
    from webapp.llm.templates import ChatTurn, get_template

    return get_template("chatml").render([ChatTurn("user", text)])
