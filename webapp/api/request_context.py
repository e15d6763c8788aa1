"""Per-request context for every route (API, sign-in, Gradio): a request id and a metric.

A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs the app
in another task and pipes every chunk of a streamed response through a memory stream, which cost the
streaming API a few percent of the app's CPU (bench/, P3).
"""

from __future__ import annotations

import logging
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webapp.chat import metrics
from webapp.logs import request_id_var

REQUEST_ID_HEADER = "X-Request-Id"
log = logging.getLogger("guardchat.http")


class RequestContextMiddleware:
    """Echoes ``X-Request-Id`` (or a new one) and logs under it; counts responses by route and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = ended = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started, ended
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                ended = True
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not started or ended:
                raise  # the error handler outside answers 500
            # Too late for an error status (e.g. a route failing mid-stream): log it under the request id and
            # end the body, so the client sees the response end rather than a broken connection.
            log.exception("the response failed after it started")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            request_id_var.reset(token)
            metrics.HTTP_REQUESTS.labels(_route_label(scope), str(status)).inc()


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    return "/gradio" if str(scope.get("path", "")).startswith("/gradio") else "other"
