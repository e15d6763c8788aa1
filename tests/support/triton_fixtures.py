"""pytest plugin: real Triton servers (pytriton, CPU) with the dialect stand-ins and the local models.

Load with ``pytest_plugins = ["tests.support.triton_fixtures"]`` or ``pytest -p tests.support.triton_fixtures``.

- ``triton_server`` (session): ONE server with every stand-in (``nemo2310``, ``nemo2``, ``nemo2_once``,
  ``trtllm_ensemble``, ``trtllm_ensemble_once``, ``vllm``; see tests/support/triton_standins.py) plus ``smollm2``,
  ``smollm2_stream``, ``synthetic_bench`` and ``synthetic_bench_once``. Do not stop it.
- ``start_triton`` (function): a factory for small private servers to stop and restart (outages).

The server runs in a subprocess, in its own process group, so its model threads do not compete with the
test's event loop and nothing outlives the test run: teardown kills the group (and removes the shared
memory Triton leaves), an atexit hook kills what is left, and the server exits by itself if the pytest
process dies. ``start()``, ``stop()`` and ``kill()`` block (seconds): from async tests call them with
``await asyncio.to_thread(server.stop)``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.paths import PROJECT_ROOT
from tests.support.ports import free_port
from tests.support.triton_standins import STANDIN_MODELS, StandinRecord
from webapp.llm.local_server import LOCAL_MODELS, wait_until_ready

ALL_MODELS = STANDIN_MODELS + LOCAL_MODELS
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0

_live_process_groups: set[int] = set()


@atexit.register
def _kill_leftover_servers() -> None:
    for pgid in list(_live_process_groups):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


@dataclass
class TritonServer:
    """A Triton server subprocess with some of the test models, on fixed ports (kept across restarts)."""

    models: tuple[str, ...]
    state_dir: Path
    run_dir: Path
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    startup_s: float = 0.0  # how long the last start() took
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _starts: int = field(default=0, repr=False)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "server.log"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Start the server (again, on the same ports) and wait until every model is ready."""
        if self.is_running:
            raise RuntimeError("Triton test server is already running")
        self._starts += 1
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable, "-m", "tests.support.triton_standins",
                    "--state-dir", str(self.state_dir),
                    "--models", ",".join(self.models),
                    "--http-port", str(self.http_port),
                    "--grpc-port", str(self.grpc_port),
                    "--metrics-port", str(self.metrics_port),
                    "--workspace", str(self.run_dir / f"workspace-{self._starts}"),
                ],
                cwd=PROJECT_ROOT,
                # base64 over the socket instead of shared-memory tensors, so kill() leaves no segments behind
                env={**os.environ, "PYTRITON_NO_TENSORSTORE": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        _live_process_groups.add(self._process.pid)
        try:
            wait_until_ready(self.http_url, self.models, timeout_s, server_pid=self._process.pid)
        except Exception as error:
            self.kill()
            raise RuntimeError(
                f"Triton test server did not start: {error}\n--- log tail ---\n{self.log_tail()}"
            ) from error
        self.startup_s = time.monotonic() - started

    def stop(self) -> None:
        """Shut down cleanly and wait until it is gone (seconds): running streams end at their next chunk
        with a "shutting down" error, then Triton unloads the models."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._forget(process)

    def kill(self) -> None:
        """Crash the whole server at once (SIGKILL to Triton and its model processes): an outage mid-stream."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self._forget(process)
        # Triton names its python-backend shared memory after our server's pid; a killed Triton leaves it behind.
        for region in Path("/dev/shm").glob(f"pytrtion{process.pid}-*"):
            region.unlink(missing_ok=True)

    def _forget(self, process: subprocess.Popen[bytes]) -> None:
        _wait_for_process_group_exit(process.pid, STOP_TIMEOUT_S)
        _live_process_groups.discard(process.pid)
        self._process = None

    def requests(self, model: str) -> list[StandinRecord]:
        """What the stand-in ``model`` received so far (oldest first)."""
        records = []
        for path in (self.state_dir / model).glob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                records.append(StandinRecord.load(path))
        return sorted(records, key=lambda record: record.received_at)

    def find_request(
        self,
        model: str,
        marker: str,
        *,
        until: Callable[[StandinRecord], bool] = lambda record: True,
        timeout_s: float = 5.0,
    ) -> StandinRecord:
        """The first request to ``model`` whose prompt contains ``marker``, once ``until(record)`` holds."""
        deadline = time.monotonic() + timeout_s
        while True:
            matching = [record for record in self.requests(model) if marker in record.prompt]
            if matching and until(matching[0]):
                return matching[0]
            if time.monotonic() >= deadline:
                state = matching[0] if matching else "no request with that marker"
                raise AssertionError(f"{model}: no request containing {marker!r} reached the condition: {state}")
            time.sleep(0.02)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_bytes().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _wait_for_process_group_exit(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One shared Triton with every stand-in and local model. Read-only for tests: never stop it."""
    run_dir = tmp_path_factory.mktemp("triton")
    server = TritonServer(models=ALL_MODELS, state_dir=run_dir / "state", run_dir=run_dir)
    server.start()
    yield server
    server.kill()  # nothing to save, and a graceful stop of nine models takes ~8 s


@pytest.fixture
def start_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., TritonServer]]:
    """Factory: ``start_triton(models=("nemo2",))`` -> a running private server, stopped after the test."""
    servers: list[TritonServer] = []

    def start(models: Sequence[str] = ("nemo2",), **ports: int) -> TritonServer:
        run_dir = tmp_path_factory.mktemp("triton-private")
        server = TritonServer(models=tuple(models), state_dir=run_dir / "state", run_dir=run_dir, **ports)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()
