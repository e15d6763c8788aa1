"""`guardchat serve --workers N`: N app processes on PostgreSQL behind one nginx, supervised as one service.

The parent starts (once) the local model server if asked, then N workers — each a plain `guardchat serve` on
127.0.0.1 on a free port of its own, with the parent's settings — waits until every worker's /readyz answers,
then starts nginx (webapp/proxy.py) on the public address. It never runs degraded: if a worker or nginx exits,
it stops the rest and exits non-zero, naming the one that died. SIGTERM or SIGINT stops nginx (gracefully,
streams get SHUTDOWN_TIMEOUT_S) and then every worker. Each child runs in its own session (a Ctrl-C reaches the
parent only, which stops them in order) and is sent SIGTERM by the kernel if the parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from webapp import proxy
from webapp.local_model import local_model_server, wants_local_model
from webapp.settings import Settings

READY_TIMEOUT_S = 300.0  # imports, rails and Gradio in N processes at once on a small machine
POLL_INTERVAL_S = 0.25
WORKER_STOP_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1


class ServiceFailedError(RuntimeError):
    """A worker or nginx exited, or did not get ready: the service stops."""


def check_can_scale_out(settings: Settings, workers: int) -> str:
    """The nginx binary, once the settings allow ``workers`` processes; SystemExit with the reason otherwise."""
    if workers < 2:
        raise SystemExit(f"guardchat: --workers {workers}: use 2 or more (or leave it out for one process)")
    try:
        backend = make_url(settings.resolved_database_url).get_backend_name()
    except ArgumentError as error:
        raise SystemExit(f"guardchat: GUARDCHAT_DATABASE_URL is not a database URL: {error}") from None
    if backend != "postgresql":
        raise SystemExit(
            f"guardchat: --workers {workers} needs PostgreSQL, and the database is {backend} "
            f"({settings.resolved_database_url}). Several processes do not share one SQLite file: set "
            "GUARDCHAT_DATABASE_URL=postgresql+psycopg://user@host/db (then `guardchat db upgrade`), "
            "or run one process (no --workers)."
        )
    try:
        return proxy.find_nginx()
    except proxy.NginxMissingError as error:
        raise SystemExit(f"guardchat: {error}") from None


def worker_env(settings: Settings, port: int) -> dict[str, str]:
    """This environment plus every setting of the parent as GUARDCHAT_*, so each worker runs with exactly them."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"GUARDCHAT_{name.upper()}"] = text
    env.update({"GUARDCHAT_HOST": "127.0.0.1", "GUARDCHAT_PORT": str(port), "NEMO_GUARDRAILS_NO_USAGE_STATS": "1"})
    return env


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports the OS just handed out (all held at once, so no two are the same)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def require_free(host: str, port: int) -> None:
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            raise SystemExit(f"guardchat: cannot listen on {proxy.listen_address(host, port)}: {error}") from None


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function: the kernel sends the child SIGTERM when this process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return arm


@dataclass
class Child:
    name: str  # "worker 2", "nginx"
    process: subprocess.Popen[bytes]
    address: str  # where it listens

    def exit_reason(self) -> str | None:
        code = self.process.poll()
        if code is None:
            return None
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return f"{self.name} (pid {self.process.pid}, {self.address}) {how}"

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def wait_or_kill(self, timeout_s: float) -> None:
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            print(f"guardchat: {self.name} did not stop within {timeout_s:g} s; killing it", file=sys.stderr)
        # Its own session: whatever it left behind goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass
class WorkerGroup:
    settings: Settings
    nginx_binary: str
    host: str
    port: int
    stop: threading.Event
    workers: list[Child] = field(default_factory=list)
    nginx: Child | None = None

    @property
    def nginx_log(self) -> Path:
        return proxy.ProxyLayout.in_data_dir(self.settings.data_dir).error_log

    @property
    def public_url(self) -> str:
        return f"http://{proxy.listen_address(self.host, self.port)}"

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None, address: str) -> Child:
        process = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_parent())
        return Child(name, process, address)

    def start_workers(self, count: int) -> None:
        for index, port in enumerate(free_ports(count), start=1):
            command = [sys.executable, "-m", "webapp.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
            child = self._spawn(f"worker {index}", command, worker_env(self.settings, port), f"127.0.0.1:{port}")
            self.workers.append(child)
            print(f"guardchat: {child.name} (pid {child.process.pid}) on http://{child.address}", flush=True)

    def start_nginx(self) -> None:
        layout = proxy.ProxyLayout.in_data_dir(self.settings.data_dir)
        ports = [int(w.address.rsplit(":", 1)[1]) for w in self.workers]
        conf = proxy.write_config(self.settings, layout=layout, host=self.host, port=self.port, worker_ports=ports)
        self.nginx = self._spawn("nginx", layout.command(self.nginx_binary), None, self.public_url)
        print(f"guardchat: nginx (pid {self.nginx.process.pid}) on {self.public_url}, config {conf}", flush=True)

    @property
    def children(self) -> list[Child]:
        return [*self.workers, *([self.nginx] if self.nginx else [])]

    def check_alive(self) -> None:
        for child in self.children:
            reason = child.exit_reason()
            if reason and child is self.nginx:
                reason += f"; the end of its log ({self.nginx_log}):\n{_tail(self.nginx_log)}"
            if reason:
                raise ServiceFailedError(reason)

    def wait_until(self, what: str, url: str, ok: Callable[[httpx.Response], bool]) -> bool:
        """Poll ``url`` until ``ok``; False if a stop was asked for first. Raises if a child exits or on timeout."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer"
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while not self.stop.is_set():
                self.check_alive()
                try:
                    response = client.get(url)
                    if ok(response):
                        return True
                    last = f"HTTP {response.status_code}: {response.text[:300]}"
                except httpx.TransportError as error:
                    last = f"{type(error).__name__}"
                if time.monotonic() > deadline:
                    raise ServiceFailedError(f"{what} was not ready after {READY_TIMEOUT_S:g} s ({url}: {last})")
                self.stop.wait(POLL_INTERVAL_S)
        return False

    def wait_workers_ready(self) -> bool:
        for worker in self.workers:
            if not self.wait_until(worker.name, f"http://{worker.address}/readyz", _is_ok):
                return False
        return True

    def wait_proxy_ready(self) -> bool:
        local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)  # noqa: S104
        url = f"http://{proxy.listen_address(local, self.port)}/readyz"
        return self.wait_until("nginx", url, lambda r: _is_ok(r) and proxy.WORKER_HEADER in r.headers)

    def supervise(self) -> None:
        """Until a stop is asked for; raises ServiceFailedError if any child exits first."""
        while not self.stop.wait(POLL_INTERVAL_S):
            self.check_alive()
        self.check_alive()

    def shutdown(self) -> None:
        """nginx first (no new requests; open streams get its shutdown timeout), then every worker at once."""
        if self.nginx is not None:
            self.nginx.signal(signal.SIGQUIT)
            self.nginx.wait_or_kill(proxy.SHUTDOWN_TIMEOUT_S + 5)
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait_or_kill(WORKER_STOP_TIMEOUT_S)


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


def _is_ok(response: httpx.Response) -> bool:
    return response.status_code == 200


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handle(signum: int, _frame: FrameType | None) -> None:
        print(f"guardchat: {signal.Signals(signum).name}: stopping nginx and the workers", file=sys.stderr, flush=True)
        stop.set()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_workers(settings: Settings, *, host: str, port: int, workers: int, local_model: str = "no") -> None:
    """Serve with ``workers`` processes behind nginx until SIGTERM/SIGINT; SystemExit if any of them dies."""
    nginx_binary = check_can_scale_out(settings, workers)
    settings.check_secure()
    require_free(host, port)
    stop = threading.Event()
    model = local_model_server(settings) if wants_local_model(local_model) else contextlib.nullcontext()
    with _stop_on_signals(stop), model:
        group = WorkerGroup(settings, nginx_binary, host, port, stop)
        try:
            _start_and_supervise(group, workers)
        except ServiceFailedError as error:
            raise SystemExit(
                f"guardchat: {error}; stopping nginx and every worker (--workers {workers} never runs degraded)"
            ) from None
        finally:
            group.shutdown()
            print(f"guardchat: stopped nginx and {len(group.workers)} workers", flush=True)


def _start_and_supervise(group: WorkerGroup, workers: int) -> None:
    if group.stop.is_set():  # a signal while the local model server was starting
        return
    group.start_workers(workers)
    if not group.wait_workers_ready():
        return
    group.start_nginx()
    if not group.wait_proxy_ready():
        return
    print(f"guardchat: ready: {workers} workers behind nginx on {group.public_url}", flush=True)
    group.supervise()
