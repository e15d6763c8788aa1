"""The local Triton model server that `guardchat serve --local-model` starts beside the app, once per service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from webapp.settings import Settings

LOCAL_MODEL_READY_TIMEOUT_S = 300.0


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
