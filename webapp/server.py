"""`guardchat serve`: uvicorn around the app, with the local Triton model server beside it if asked (local_model.py)."""

from __future__ import annotations

import contextlib
import logging
import sys

import uvicorn

from webapp.local_model import local_model_server, wants_local_model
from webapp.logs import configure_logging
from webapp.settings import Settings

log = logging.getLogger("guardchat.server")
GIL_SWITCH_INTERVAL_S = 0.001


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
    with local_model_server(settings) if wants_local_model(local_model) else contextlib.nullcontext():
        app = create_app(settings)
        uvicorn.run(
            app,
            host=host or settings.host,
            port=port or settings.port,
            log_level="info",
            log_config=None,
            timeout_graceful_shutdown=5,
        )
