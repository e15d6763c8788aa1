"""`guardchat serve --workers N` without the app: its refusals, the workers' settings, and the nginx config.

The config is checked twice: by reading it, and by running it in a real nginx in front of two small HTTP
servers that answer with their own name, so stickiness, round-robin, the body limit and unbuffered streams are
nginx's behaviour, not a string match.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.settings import SettingsFactory
from webapp import proxy, workers
from webapp.cli import main

RELEASE = threading.Event()  # the test's "I have the first event" to the event stream below
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/nowhere"  # parsed only: the checks come before any connection


def test_sqlite_is_refused(settings_factory: SettingsFactory, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["serve", "--workers", "2"])  # the default database: SQLite in the data dir
    message = str(refused.value.code)
    assert "--workers 2 needs PostgreSQL" in message and "sqlite" in message and "SQLite file" in message
    with pytest.raises(SystemExit, match="needs PostgreSQL"):
        workers.check_can_scale_out(settings_factory(database_url="sqlite:///x.db"), 4)


def test_fewer_than_two_workers_is_refused(settings_factory: SettingsFactory) -> None:
    with pytest.raises(SystemExit, match="use 2 or more"):
        workers.check_can_scale_out(settings_factory(database_url=PG_URL), 0)


def test_a_missing_nginx_is_named_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings_factory: SettingsFactory
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(proxy, "NGINX_FALLBACK_DIRS", ())
    monkeypatch.setenv("GUARDCHAT_DATABASE_URL", PG_URL)
    with pytest.raises(SystemExit) as refused:
        main(["serve", "--workers", "2"])
    message = str(refused.value.code)
    assert "needs nginx" in message and "make nginx" in message and "apt-get install nginx" in message


def test_nginx_is_found_where_debian_puts_it_even_off_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert Path(proxy.find_nginx()).name == "nginx"


def test_workers_get_the_parents_settings(settings_factory: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = settings_factory(
        database_url=PG_URL, secret_key="s" * 40, rate_limit_per_minute=7, self_check_rails=False, port=9000
    )
    env = workers.worker_env(parent, 4321)
    for key in [k for k in env if k.startswith("GUARDCHAT_")]:
        monkeypatch.setenv(key, env[key])
    child = settings_factory()
    assert (child.host, child.port) == ("127.0.0.1", 4321)
    assert child.secret_key.get_secret_value() == "s" * 40
    same = {"host", "port", "secret_key"}
    assert {k: v for k, v in child.model_dump().items() if k not in same} == {
        k: v for k, v in parent.model_dump().items() if k not in same
    }


def test_the_config_says_what_the_readme_asks_of_a_proxy(settings_factory: SettingsFactory, tmp_path: Path) -> None:
    settings = settings_factory(max_body_bytes=123_456, triton_request_timeout_s=600)
    layout = proxy.ProxyLayout(tmp_path / "nginx")
    conf = proxy.render_config(settings, layout=layout, host="0.0.0.0", port=8080, worker_ports=[5001, 5002])  # noqa: S104
    assert "listen 0.0.0.0:8080;" in conf
    assert conf.count("server 127.0.0.1:5001;") == 2 and conf.count("server 127.0.0.1:5002;") == 2
    pages, api = conf.split("upstream guardchat_pages")[1].split("upstream guardchat_api")
    assert "hash $guardchat_route consistent;" in pages and "least_conn;" in api
    assert "proxy_buffering off;" in conf and "proxy_read_timeout 660s;" in conf
    assert "client_max_body_size 123456;" in conf and "larger than 123456 bytes" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf and "X-Forwarded-Proto" in conf
    assert str(layout.pid_file) in conf and str(layout.temp / "client_body") in conf
    assert "Secure" not in conf
    production = settings_factory(environment="production", secret_key="p" * 40)
    assert "SameSite=Lax; Secure" in proxy.render_config(
        production, layout=layout, host="::", port=8080, worker_ports=[5001]
    )
    assert proxy.listen_address("::", 8080) == "[::]:8080"


# --- the config in a real nginx -------------------------------------------------------------------------------


class _NamedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/events":
            self._events()
            return
        name = self.server.name  # type: ignore[attr-defined]
        self._answer(f"{name} {self.headers.get('X-Forwarded-Host')} {self.headers.get('X-Request-Id')}".encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(f"{self.server.name} got {len(self.rfile.read(length))}".encode())  # type: ignore[attr-defined]

    def _events(self) -> None:
        """Two server-sent events; the second only once the client has received the first (RELEASE)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in (b"data: one\n\n", b"data: two\n\n"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            RELEASE.wait(timeout=20)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def _named_server(name: str) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NamedHandler)
    server.name = name  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxied(settings_factory: SettingsFactory, tmp_path: Path) -> Iterator[str]:
    """A real nginx with the generated config in front of two named servers; its URL."""
    settings = settings_factory(data_dir=tmp_path / "data", max_body_bytes=2048)
    port = free_port()
    with _named_server("A") as a, _named_server("B") as b:
        layout = proxy.ProxyLayout.in_data_dir(settings.data_dir)
        proxy.write_config(settings, layout=layout, host="127.0.0.1", port=port, worker_ports=[a, b])
        nginx = subprocess.Popen(layout.command(proxy.find_nginx()), start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(url, nginx, layout.error_log)
            yield url
        finally:
            nginx.terminate()
            nginx.wait(timeout=30)
    assert not layout.pid_file.exists()  # nginx removed it on its way out


def _wait_for(url: str, nginx: subprocess.Popen[bytes], error_log: Path) -> None:
    for _ in range(200):
        assert nginx.poll() is None, error_log.read_text()
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=1)
            return
        time.sleep(0.05)
    raise AssertionError(f"nginx did not answer: {error_log.read_text()}")


def _worker(response: httpx.Response) -> str:
    return response.headers[proxy.WORKER_HEADER]


@pytest.mark.integration
def test_pages_stick_to_the_worker_their_first_response_chose(proxied: str) -> None:
    seen = set()
    for _ in range(40):  # fresh browsers: each gets a route cookie, and every later request goes where it says
        with httpx.Client(base_url=proxied) as browser:
            first = browser.get("/login")
            cookie = browser.cookies[proxy.ROUTE_COOKIE]
            assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Lax" in first.headers["set-cookie"]
            assert first.text.startswith(("A ", "B ")) and {"A ": "1", "B ": "2"}[first.text[:2]] == _worker(first)
            later = [browser.get(path) for path in ("/", "/config", "/gradio_api/queue/data", "/login")]
            assert {_worker(r) for r in later} == {_worker(first)}
            assert all("set-cookie" not in r.headers for r in later)  # the cookie is set once
            assert browser.cookies[proxy.ROUTE_COOKIE] == cookie
            seen.add(_worker(first))
    assert seen == {"1", "2"}  # and the browsers are spread over both (all on one: a chance of 2**-39)


@pytest.mark.integration
def test_the_api_goes_round_robin_and_headers_are_forwarded(proxied: str) -> None:
    with httpx.Client(base_url=proxied) as client:
        answers = [client.post("/v1/chat/completions", content=b"{}") for _ in range(6)]
        assert [_worker(r) for r in answers] == ["1", "2"] * 3 or [_worker(r) for r in answers] == ["2", "1"] * 3
        assert all("set-cookie" not in r.headers for r in answers)
        assert {_worker(client.get("/readyz")) for _ in range(4)} == {"1", "2"}
        _, forwarded_host, request_id = client.get("/", headers={"X-Request-Id": "trace-me"}).text.split()
        assert forwarded_host == proxied.removeprefix("http://") and request_id == "trace-me"
        assert len(client.get("/").text.split()[2]) == 32  # nginx's own id when the client sent none


@pytest.mark.integration
def test_a_body_over_the_limit_is_refused_with_the_apps_error(proxied: str) -> None:
    ok = httpx.post(f"{proxied}/v1/chat/completions", content=b"x" * 2048)
    assert ok.status_code == 200 and ok.text.endswith("got 2048")
    refused = httpx.post(f"{proxied}/v1/chat/completions", content=b"x" * 2049)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "body_too_large" and "2048 bytes" in refused.json()["error"]["message"]


@pytest.mark.integration
def test_server_sent_events_pass_as_they_are_sent(proxied: str) -> None:
    """The second event waits until the client holds the first: nothing is held back until the response ends.

    (nginx 1.22 passes these on even with proxy_buffering on; the config test checks it is off, which also keeps
    nginx from reading a whole stream ahead of a slow client.)"""
    RELEASE.clear()
    with httpx.stream("GET", f"{proxied}/events", timeout=60) as events:
        lines = events.iter_lines()
        assert next(lines) == "data: one"
        RELEASE.set()
        rest = [line for line in lines if line]
    assert rest == ["data: two"]
