"""The nginx in front of `guardchat serve --workers N`: where its binary is, and the configuration it runs with.

The configuration keeps what must stay on one process there and spreads what need not:

- **The Gradio pages are sticky.** Gradio keeps each tab's event queue and its server-sent-event stream in the
  memory of the process that served the page. Affinity is an nginx cookie of its own, ``guardchat_route``: the
  first response without one sets it to that request's id, and ``hash $guardchat_route consistent`` sends every
  request carrying it to the same worker. The session cookie cannot serve: it does not exist before sign-in, and
  Starlette re-signs it with a new timestamp on every response, so its value (and its hash) keeps changing.
- **The API is not.** ``/v1`` is stateless per request (everything shared lives in the database), so it goes to
  the worker with the fewest open connections (``least_conn``; ties go round-robin).
- Streams pass through unbuffered, with read timeouts longer than a reply may take; websocket upgrades pass too.
- ``X-GuardChat-Worker`` on every response names the worker that answered (1..N): for operators and the tests.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from webapp.api.body_limit import refusal_body
from webapp.settings import Settings

# Debian installs nginx in /usr/sbin, which is not on an unprivileged user's PATH.
NGINX_FALLBACK_DIRS: tuple[str, ...] = ("/usr/sbin", "/sbin")
INSTALL_HINT = "install it with `make nginx` (Debian/Ubuntu: `sudo apt-get install nginx`)"
ROUTE_COOKIE = "guardchat_route"
WORKER_HEADER = "X-GuardChat-Worker"
MIN_READ_TIMEOUT_S = 300
SHUTDOWN_TIMEOUT_S = 10  # nginx's graceful stop (SIGQUIT) ends open streams after this long


class NginxMissingError(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "guardchat serve --workers N needs nginx in front of the worker processes, and nginx was not found "
            f"on PATH or in {', '.join(NGINX_FALLBACK_DIRS)}: {INSTALL_HINT}"
        )


def find_nginx() -> str:
    """The nginx binary: on PATH, else where Debian puts it."""
    found = shutil.which("nginx") or shutil.which("nginx", path=os.pathsep.join(NGINX_FALLBACK_DIRS))
    if not found:
        raise NginxMissingError()
    return found


@dataclass(frozen=True)
class ProxyLayout:
    """Where one nginx keeps its files: all inside the data dir, so it runs unprivileged."""

    prefix: Path

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> ProxyLayout:
        return cls(data_dir.resolve() / "nginx")

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def pid_file(self) -> Path:
        return self.prefix / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def temp(self) -> Path:
        return self.prefix / "temp"

    def create(self) -> None:
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.temp / name).mkdir(parents=True, exist_ok=True)

    def command(self, nginx: str) -> list[str]:
        return [nginx, "-g", "daemon off;", "-c", str(self.conf), "-p", str(self.prefix), "-e", str(self.error_log)]


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_timeout_s(settings: Settings) -> int:
    """Longer than a whole non-streamed reply may take (the Triton request timeout), and never under 300 s."""
    return max(MIN_READ_TIMEOUT_S, int(settings.triton_request_timeout_s) + 60)


def _body_too_large(settings: Settings) -> str:
    # The same JSON refusal the app's BodyLimitMiddleware gives, for bodies nginx refuses before a worker sees them.
    return json.dumps(refusal_body(settings.max_body_bytes))


def _run_as() -> str:
    """nginx started by root hands its workers to `nobody`, who cannot write the temp dirs: keep root's user."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};\n"


def render_config(settings: Settings, *, layout: ProxyLayout, host: str, port: int, worker_ports: list[int]) -> str:
    """nginx.conf for ``worker_ports`` (127.0.0.1) behind ``host:port``."""
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in worker_ports)
    names = "\n".join(f"        127.0.0.1:{p} {i};" for i, p in enumerate(worker_ports, start=1))
    secure = "; Secure" if settings.environment == "production" else ""
    timeout = read_timeout_s(settings)
    temp = layout.temp
    return f"""# Written by `guardchat serve --workers {len(worker_ports)}` (webapp/proxy.py) at every start.
{_run_as()}worker_processes 1;  # proxying is cheap next to the app processes; they need the cores
pid {_quoted(layout.pid_file)};
error_log {_quoted(layout.error_log)} warn;
worker_shutdown_timeout {SHUTDOWN_TIMEOUT_S}s;

events {{
    worker_connections 1024;
}}

http {{
    # The workers log every request (JSON lines) under the X-Request-Id passed on below.
    access_log off;
    server_tokens off;
    default_type application/octet-stream;
    client_body_temp_path {_quoted(temp / "client_body")};
    proxy_temp_path {_quoted(temp / "proxy")};
    fastcgi_temp_path {_quoted(temp / "fastcgi")};
    uwsgi_temp_path {_quoted(temp / "uwsgi")};
    scgi_temp_path {_quoted(temp / "scgi")};

    # Affinity for the Gradio pages: the browser's route cookie, or (first visit) this request's id, which the
    # response then sets as the cookie.
    map $cookie_{ROUTE_COOKIE} $guardchat_route {{
        "" $request_id;
        default $cookie_{ROUTE_COOKIE};
    }}
    map $cookie_{ROUTE_COOKIE} $guardchat_set_route {{
        "" "{ROUTE_COOKIE}=$request_id; Path=/; HttpOnly; SameSite=Lax{secure}";
        default "";
    }}
    map $upstream_addr $guardchat_worker {{
{names}
        default $upstream_addr;
    }}
    map $http_upgrade $guardchat_connection {{
        default upgrade;
        "" "";
    }}
    map $http_x_forwarded_proto $guardchat_proto {{
        "" $scheme;
        default $http_x_forwarded_proto;
    }}
    map $http_x_request_id $guardchat_request_id {{
        "" $request_id;
        default $http_x_request_id;
    }}

    upstream guardchat_pages {{
        hash $guardchat_route consistent;
{servers}
        keepalive 32;
    }}
    upstream guardchat_api {{
        least_conn;
{servers}
        keepalive 32;
    }}

    server {{
        listen {listen_address(host, port)};
        # GUARDCHAT_MAX_BODY_BYTES: the same limit the app applies, refused here with the app's JSON error.
        client_max_body_size {settings.max_body_bytes};
        error_page 413 @body_too_large;

        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $guardchat_connection;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-Proto $guardchat_proto;
        proxy_set_header X-Request-Id $guardchat_request_id;
        # Server-sent events (Gradio's queue, the streaming API): every token as it comes, and no read timeout
        # shorter than a reply may take.
        proxy_buffering off;
        proxy_cache off;
        proxy_read_timeout {timeout}s;
        proxy_send_timeout {timeout}s;

        location /v1/ {{
            add_header {WORKER_HEADER} $guardchat_worker always;
            proxy_pass http://guardchat_api;
        }}
        location ~ ^/(healthz|readyz|metrics)$ {{
            add_header {WORKER_HEADER} $guardchat_worker always;
            proxy_pass http://guardchat_api;
        }}
        location / {{
            add_header {WORKER_HEADER} $guardchat_worker always;
            add_header Set-Cookie $guardchat_set_route;
            proxy_pass http://guardchat_pages;
        }}
        location @body_too_large {{
            default_type application/json;
            return 413 '{_body_too_large(settings)}';
        }}
    }}
}}
"""


def write_config(settings: Settings, *, layout: ProxyLayout, host: str, port: int, worker_ports: list[int]) -> Path:
    layout.create()
    layout.conf.write_text(
        render_config(settings, layout=layout, host=host, port=port, worker_ports=worker_ports), encoding="utf-8"
    )
    return layout.conf
