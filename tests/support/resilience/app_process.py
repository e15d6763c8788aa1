"""GuardChat as a real operating-system process (`python -m webapp.cli serve`), so SIGKILL is a real crash.

One `AppProcess` keeps its port, data directory and settings across `kill()` and `start()`, like an
operator restarting a crashed service. Each process runs in its own process group, is killed at
interpreter exit if a test forgets it, and writes its log to ``<data_dir>/app-<n>.log``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.paths import PROJECT_ROOT
from tests.support.ports import free_port

STARTUP_TIMEOUT_S = 240.0  # imports, rails and Gradio on a busy 2-core machine
SECRET_KEY = "resilience-tests-secret-key-0123456789abcdef"  # shared, so a session works on every process

_live_groups: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pgid in list(_live_groups):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def guardchat_env(**settings: object) -> dict[str, str]:
    """This process's environment without any GUARDCHAT_* value, plus ``settings`` as GUARDCHAT_* values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDCHAT_")}
    env.update({"HF_HUB_OFFLINE": "1", "NEMO_GUARDRAILS_NO_USAGE_STATS": "1"})
    values: dict[str, object] = {"rails_dir": PROJECT_ROOT / "rails", "secret_key": SECRET_KEY, **settings}
    env.update({f"GUARDCHAT_{name.upper()}": str(value) for name, value in values.items()})
    return env


@dataclass
class AppProcess:
    data_dir: Path
    settings: dict[str, object]
    port: int = field(default_factory=free_port)
    starts: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "the app is not running"
        return self._process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"app-{self.starts}.log"

    def spawn(self) -> None:
        """Start the process without waiting (several apps can then start side by side)."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("this app process is already running")
        self.starts += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = guardchat_env(data_dir=self.data_dir, **self.settings)
        with self.log_path.open("ab") as log:
            # cwd is the data dir, so no developer .env is read.
            self._process = subprocess.Popen(
                [sys.executable, "-m", "webapp.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.data_dir,
                env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _live_groups.add(self._process.pid)

    def wait_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        process = self._process
        assert process is not None, "spawn() first"
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"guardchat serve exited with {process.returncode}\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                time.sleep(0.1)
        raise RuntimeError(f"guardchat serve was not healthy after {timeout_s:g} s\n{self.log_tail()}")

    def start(self) -> None:
        self.spawn()
        self.wait_healthy()

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handler, no final commit, no lease release."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _live_groups.discard(process.pid)
        self._process = None

    def stop(self) -> None:
        """A clean stop (SIGTERM), falling back to SIGKILL."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        _live_groups.discard(process.pid)
        self._process = None

    def log_text(self) -> str:
        logs = sorted(self.data_dir.glob("app-*.log"))
        return "\n".join(path.read_bytes().decode("utf-8", errors="replace") for path in logs)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def start_all(*apps: AppProcess) -> None:
    """Start several apps side by side (their start-up is mostly imports and rails, CPU-bound)."""
    for app in apps:
        app.spawn()
    for app in apps:
        app.wait_healthy()
