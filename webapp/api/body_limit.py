"""Refuse request bodies over GUARDCHAT_MAX_BODY_BYTES as they stream in, not after they are buffered.

A declared Content-Length over the limit is refused before anything is read; a body sent without one
(chunked) is counted message by message, so a client cannot make any route (the API, Gradio's queue,
uploads) hold an unbounded body in memory. Reading past the limit raises BodyTooLargeError, an HTTP 413 that
the routes' exception handlers answer; if nothing answered yet, this middleware does.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than {max_bytes} bytes (GUARDCHAT_MAX_BODY_BYTES)")
        self.max_bytes = max_bytes


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _refusal(BodyTooLargeError(self.max_bytes))(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLargeError as exc:
            if started:
                raise
            await _refusal(exc)(scope, receive, send)


def refusal_body(max_bytes: int) -> dict[str, object]:
    """The 413's JSON body (OpenAI's error shape); nginx in front of several workers answers with it too."""
    message = BodyTooLargeError(max_bytes).detail
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "body_too_large"}}


def _refusal(exc: BodyTooLargeError) -> JSONResponse:
    return JSONResponse(refusal_body(exc.max_bytes), status_code=413)
