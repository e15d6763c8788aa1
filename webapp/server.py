"""`guardchat serve`: uvicorn around the app, optionally with the local Triton model server beside it."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from webapp.logs import configure_logging
from webapp.settings import Settings

log = logging.getLogger("guardchat.server")
LOCAL_MODEL_READY_TIMEOUT_S = 300.0
GIL_SWITCH_INTERVAL_S = 0.001


def wants_local_model(mode: str) -> bool:
    """`auto` starts the local model unless GUARDCHAT_TRITON_URL points at another Triton."""
    if mode == "auto":
        return "GUARDCHAT_TRITON_URL" not in os.environ
    return mode == "yes"


@contextmanager
def local_model_server(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    from webapp.llm.local_server import wait_until_ready

    for port in (settings.local_http_port, settings.local_grpc_port):
        if _port_in_use(port):
            raise SystemExit(
                f"port {port} is already in use (another model server?); stop it, or set "
                "GUARDCHAT_TRITON_URL to use a running Triton, or choose GUARDCHAT_LOCAL_*_PORT"
            )
    models = list(dict.fromkeys([settings.triton_model, settings.guard_model]))
    cmd = [sys.executable, "-m", "webapp.llm.local_server", "serve", "--exit-with-parent"]
    cmd += ["--models", ",".join(models), "--http-port", str(settings.local_http_port)]
    cmd += ["--grpc-port", str(settings.local_grpc_port), "--metrics-port", str(settings.local_metrics_port)]
    print(f"starting the local Triton model server on :{settings.local_grpc_port} (gRPC)", flush=True)
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        wait_until_ready(
            f"http://127.0.0.1:{settings.local_http_port}",
            models,
            timeout_s=LOCAL_MODEL_READY_TIMEOUT_S,
            server_pid=proc.pid,
        )
        yield proc
    finally:
        if proc.poll() is None:
            # SIGTERM to the server only: it stops tritonserver itself; signalling the group would race that.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    local_model: str = "no",
    workers: int = 1,
) -> None:
    """One app process; with ``workers`` > 1, that many behind nginx (webapp/workers.py)."""
    if workers != 1:
        from webapp.workers import run_workers

        run_workers(
            settings, host=host or settings.host, port=port or settings.port, workers=workers, local_model=local_model
        )
        return
    from webapp.app import create_app

    settings.check_secure()
    configure_logging()
    # Database work runs in worker threads beside a busy event loop; with Python's default 5 ms GIL switch
    # interval a thread holding SQLite's write lock waited up to 5 ms for the GIL after every statement
    # (64 streams: write transactions p90 244 ms -> 110 ms with 1 ms).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    with local_model_server(settings) if wants_local_model(local_model) else _nothing():
        app = create_app(settings)
        uvicorn.run(
            app,
            host=host or settings.host,
            port=port or settings.port,
            log_level="info",
            log_config=None,
            timeout_graceful_shutdown=5,
        )


@contextmanager
def _nothing() -> Iterator[None]:
    yield None
