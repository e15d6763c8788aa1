"""`guardchat serve --workers 2` for real: two app processes on one PostgreSQL database behind the nginx it starts.

Everything goes through the proxy, as a browser and an API client would: a signed-in chat page (its config,
queue and stream) stays on one worker, /v1 calls spread over both, a ban made on one worker's admin page holds
on the other, and SIGTERM leaves no process and no listening port behind. A worker that dies stops the service
with its name. Which worker answered is nginx's ``X-GuardChat-Worker`` header.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.paths import PROJECT_ROOT
from tests.support.ports import free_port
from tests.support.resilience.app_process import STARTUP_TIMEOUT_S, guardchat_env
from tests.support.resilience.chat_api import PASSWORD, create_user_with_key
from tests.support.resilience.chat_page import send_message
from tests.support.resilience.crash import app_settings, wait_for
from tests.support.triton_fixtures import TritonServer
from tests.support.ui.gradio_http import backend_dependencies, run_event
from webapp.proxy import ROUTE_COOKIE, WORKER_HEADER
from webapp.store.engine import Database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STARTED = re.compile(r"^guardchat: (worker \d+|nginx) \(pid (\d+)\) on http://(\S+?)(?:,|$)", re.MULTILINE)


@dataclass
class Service:
    """A running `guardchat serve --workers N` and what it said it started."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    pids: dict[str, int] = field(default_factory=dict)  # "worker 1", ..., "nginx" -> pid
    addresses: dict[str, str] = field(default_factory=dict)  # the same names -> host:port

    def log_text(self) -> str:
        return self.log.read_bytes().decode("utf-8", errors="replace")

    def worker_url(self, number: str) -> str:
        return f"http://{self.addresses[f'worker {number}']}"


def start_service(root: Path, settings: dict[str, object], workers: int = 2) -> Service:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "serve.log"
    env = {**guardchat_env(data_dir=root, **settings), "PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "webapp.cli", "serve", "--workers", str(workers), "--port", str(port)]
    with log.open("ab") as out:
        # cwd is the data dir, so no developer .env is read; its own session, so only we signal it.
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = Service(process, f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        text = service.log_text()
        assert process.poll() is None, f"guardchat serve exited with {process.returncode}\n{text[-4000:]}"
        return "guardchat: ready:" in text

    try:
        wait_for(ready, "guardchat serve --workers to be ready", timeout_s=STARTUP_TIMEOUT_S * 2)
    except BaseException:
        stop_for_good(service)
        raise
    for name, pid, address in STARTED.findall(service.log_text()):
        service.pids[name], service.addresses[name] = int(pid), address
    return service


def stop_for_good(service: Service) -> None:
    """Teardown after a failed test: nothing may outlive the module, whatever state the service is in."""
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.process.wait(timeout=60)
    for pid in [service.process.pid, *service.pids.values()]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    service.process.wait()


@pytest.fixture(scope="module")
def service(
    triton_server: TritonServer, module_pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    settings = app_settings(triton_server, module_pg_url, output_chunk_size=8, output_context_size=2)
    running = start_service(tmp_path_factory.mktemp("scale-out"), settings)
    try:
        yield running
    finally:
        stop_for_good(running)
        assert "database is locked" not in running.log_text()


@pytest.fixture(scope="module")
def db(module_pg_url: str) -> Iterator[Database]:
    database = Database(module_pg_url)
    yield database
    database.dispose()


class Served:
    """An httpx response hook: which worker answered each request, in order."""

    def __init__(self) -> None:
        self.by: list[tuple[str, str]] = []  # (path, worker)

    def __call__(self, response: httpx.Response) -> None:
        self.by.append((response.request.url.path, response.headers.get(WORKER_HEADER, "?")))

    @property
    def workers(self) -> set[str]:
        return {worker for _, worker in self.by}


@contextlib.contextmanager
def browser(url: str, username: str, served: Served, **kwargs: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=120, event_hooks={"response": [served]}, **kwargs) as client:
        signed_in = client.post("/login", data={"username": username, "password": PASSWORD})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/", signed_in.text
        yield client


def api_call(url: str, key: str, text: str) -> httpx.Response:
    body = {"model": "guardchat", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def test_two_workers_behind_nginx_and_only_nginx_outside(service: Service) -> None:
    assert sorted(service.pids) == ["nginx", "worker 1", "worker 2"]
    for number in ("1", "2"):
        assert service.addresses[f"worker {number}"].startswith("127.0.0.1:")
        assert httpx.get(f"{service.worker_url(number)}/readyz", timeout=10).status_code == 200
    through = httpx.get(f"{service.url}/readyz", timeout=10)
    assert through.status_code == 200 and through.headers[WORKER_HEADER] in {"1", "2"}
    assert service.addresses["nginx"] == service.url.removeprefix("http://")


def test_a_signed_in_chat_page_stays_on_one_worker(service: Service, db: Database) -> None:
    create_user_with_key(db, "alice")
    served = Served()
    with browser(service.url, "alice", served) as alice:
        assert ROUTE_COOKIE in alice.cookies and "guardchat_session" in alice.cookies
        page = alice.get("/", headers={"accept": "text/html"})
        assert page.status_code == 200 and "gradio" in page.text.lower()
        sent = send_message(alice, "Hello through the proxy. {{reply:Hello from one worker.}}")
        assert sent.success, sent.error
        assert "Hello from one worker." in sent.text
    paths = {path for path, _ in served.by}
    assert {"/login", "/", "/config", "/gradio_api/queue/join", "/gradio_api/queue/data"} <= paths
    assert len(served.workers) == 1 and served.workers <= {"1", "2"}, served.by


def test_api_calls_land_on_both_workers(service: Service, db: Database) -> None:
    _, key = create_user_with_key(db, "api-user")
    answers = [api_call(service.url, key, f"call {n} {{{{reply:answer {n}}}}}") for n in range(4)]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert [a.json()["choices"][0]["message"]["content"] for a in answers] == [f"answer {n}" for n in range(4)]
    assert {a.headers[WORKER_HEADER] for a in answers} == {"1", "2"}
    assert all(ROUTE_COOKIE not in a.headers.get("set-cookie", "") for a in answers)


def test_a_ban_on_one_workers_admin_page_holds_on_the_other(service: Service, db: Database) -> None:
    create_user_with_key(db, "boss", role="admin")
    _, eve_key = create_user_with_key(db, "eve")
    served = Served()
    with browser(service.url, "boss", served) as boss:
        with httpx.Client(
            base_url=f"{service.url}/admin", cookies=boss.cookies, timeout=120, event_hooks={"response": [served]}
        ) as admin:
            ban = backend_dependencies(admin)["ban_account"]
            banned = run_event(admin, ban, ["eve", "banned through the proxy", ""])
        assert banned.success, banned.error
        assert "eve is banned." in banned.text
    assert len(served.workers) == 1, served.by
    (banning,) = served.workers
    other = {"1": "2", "2": "1"}[banning]
    refused = api_call(service.worker_url(other), eve_key, "after the ban {{reply:no}}")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_banned", refused.text
    through = [api_call(service.url, eve_key, "after the ban {{reply:no}}") for _ in range(2)]
    assert [r.status_code for r in through] == [403, 403] and {r.headers[WORKER_HEADER] for r in through} == {"1", "2"}


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_sigterm_stops_nginx_and_every_worker(service: Service) -> None:
    """Last in this module: the service stops for good."""
    nginx_workers = _children_of(service.pids["nginx"])
    assert nginx_workers, "nginx runs a worker process"
    everything = [*service.pids.values(), *nginx_workers]
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=120) == 0, service.log_text()[-3000:]
    assert [pid for pid in everything if not _gone(pid)] == []
    assert [address for address in service.addresses.values() if _listening(address)] == []
    assert "guardchat: stopped nginx and 2 workers" in service.log_text()


def test_a_worker_that_dies_stops_the_service_with_its_name(
    triton_server: TritonServer, module_pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = app_settings(triton_server, module_pg_url)
    running = start_service(tmp_path_factory.mktemp("scale-out-crash"), settings)
    try:
        victim = running.pids["worker 2"]
        os.kill(victim, signal.SIGKILL)
        code = running.process.wait(timeout=120)
        text = running.log_text()
        assert code != 0, text[-3000:]
        assert f"worker 2 (pid {victim}, {running.addresses['worker 2']}) was killed by SIGKILL" in text
        assert "never runs degraded" in text
        assert [pid for pid in running.pids.values() if not _gone(pid)] == []
        assert [address for address in running.addresses.values() if _listening(address)] == []
    finally:
        stop_for_good(running)
