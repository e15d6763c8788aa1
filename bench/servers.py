"""The servers under test: a benchmark Triton and a GuardChat app, each in its own process group on free
ports, stopped with everything they started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.workload import DEFAULT_RAILS, FULL_TIMING, GUARD_MODEL, QUICK_TIMING, ROOT, SYNTHETIC_MODEL, Timing
from webapp.llm.local_server import wait_until_ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
