"""`/v1`: an OpenAI-compatible chat API on the same ChatService, rails, persistence and flags as the UI."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webapp.api.body_limit import BodyTooLargeError
from webapp.chat.events import ReplyDelta, ReplyRetracted, TurnEnded, TurnStarted
from webapp.chat.limits import LimitError
from webapp.context import AppContext
from webapp.llm.templates import ChatTurn
from webapp.services.accounts import User
from webapp.services.errors import InvalidInputError, NotFoundError

CONVERSATION_HEADER = "X-GuardChat-Conversation"
# HTTP status of a turn that ended in "error", by TurnEnded.error_code.
ERROR_STATUS = {
    "model_unavailable": 503,
    "model_timeout": 504,
    "model_error": 502,
    "prompt_too_long": 400,
    "internal_error": 500,
}


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class ChatCompletionRequest(BaseModel):
    # Unknown fields are refused so a typo never silently changes behaviour.
    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[ChatMessageIn] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = Field(1, ge=1, le=1)
    user: str | None = None
    stream_options: dict[str, Any] | None = None


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def error_response(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
    return APIError(status, message, type_=type_, code=code).response()


async def api_user(ctx: AppContext, authorization: str | None) -> User:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise APIError(
            401,
            "Missing API key: send 'Authorization: Bearer gc-…'.",
            type_="invalid_request_error",
            code="missing_api_key",
        )
    plaintext = authorization.split(None, 1)[1].strip()

    user = await ctx.api_keys.key_user(plaintext)
    if user is None:
        raise APIError(401, "Invalid or revoked API key.", type_="invalid_request_error", code="invalid_api_key")
    if user.is_banned:
        raise APIError(403, "This account is suspended.", type_="permission_error", code="account_banned")
    return user


def _sampling(body: ChatCompletionRequest) -> dict[str, Any]:
    sampling: dict[str, Any] = {}
    if body.temperature is not None:
        sampling["temperature"] = body.temperature
    if body.top_p is not None:
        sampling["top_p"] = body.top_p
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        sampling["max_new_tokens"] = max_tokens
    return sampling


def _stops(body: ChatCompletionRequest) -> list[str]:
    if body.stop is None:
        return []
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop)
    if len(stops) > 4:
        raise APIError(400, "at most 4 stop sequences are allowed", type_="invalid_request_error", param="stop")
    return [s for s in stops if s]


def build_openai_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/v1")
    settings = ctx.settings

    @router.get("/models")
    async def list_models(authorization: str | None = Header(None)) -> Response:
        try:
            await api_user(ctx, authorization)
        except APIError as exc:
            return exc.response()
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": settings.triton_model, "object": "model", "created": 0, "owned_by": "guardchat"}],
            }
        )

    @router.post("/chat/completions")
    async def chat_completions(
        request: Request,
        authorization: str | None = Header(None),
        conversation: str | None = Header(None, alias=CONVERSATION_HEADER),
    ) -> Response:
        try:
            user = await api_user(ctx, authorization)
            body = await _parse(request, settings.max_body_bytes)
            system, turns = _split_messages(body, settings.max_messages)
            conversation_id = _conversation_id(conversation)
            earlier = [] if conversation_id is not None else [ChatTurn(m.role, m.content) for m in turns[:-1]]
            events = ctx.chat.send(
                user=user,
                text=turns[-1].content,
                conversation_id=conversation_id,
                sampling=_sampling(body),
                system_prompt="\n".join(system) if system else None,
                earlier_turns=earlier,
                stop=_stops(body),
            )
            first = await anext(events)  # runs validation, limits and persistence before we answer
        except APIError as exc:
            return exc.response()
        except LimitError as exc:
            return _limit_response(exc)
        except NotFoundError as exc:
            return error_response(404, str(exc), "invalid_request_error", "conversation_not_found")
        except InvalidInputError as exc:
            return error_response(400, str(exc), "invalid_request_error")
        assert isinstance(first, TurnStarted)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        headers = {CONVERSATION_HEADER: str(first.conversation_id)}
        if body.stream:
            return StreamingResponse(
                _stream(events, completion_id, created, body.model),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        ended = await _final(events)
        if ended.status == "error":
            return _failed_turn_response(ended, headers)
        return JSONResponse(_completion(completion_id, created, body.model, ended.reply, ended), headers=headers)

    return router


def _split_messages(body: ChatCompletionRequest, max_messages: int) -> tuple[list[str], list[ChatMessageIn]]:
    """The system prompts and the conversation turns of a request, which must end with the user's message."""
    if len(body.messages) > max_messages:
        raise APIError(
            413,
            f"{len(body.messages)} messages; the limit is {max_messages} (GUARDCHAT_MAX_MESSAGES)",
            type_="invalid_request_error",
            code="too_many_messages",
            param="messages",
        )
    system = [m.content for m in body.messages if m.role == "system"]
    turns = [m for m in body.messages if m.role != "system"]
    if not turns or turns[-1].role != "user":
        raise APIError(400, "the last message must have role 'user'", type_="invalid_request_error", param="messages")
    return system, turns


def _limit_response(exc: LimitError) -> Response:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else {}
    return APIError(
        exc.status,
        str(exc),
        type_="rate_limit_error" if exc.status == 429 else "invalid_request_error",
        code=exc.limit,
        headers=headers,
    ).response()


def _failed_turn_response(ended: TurnEnded, headers: dict[str, str]) -> Response:
    # The turn is saved (marked error); the client gets a status it can act on, not an empty reply.
    return APIError(
        ERROR_STATUS.get(ended.error_code or "", 500),
        ended.error or "the reply failed",
        type_="model_error" if ended.error_code != "internal_error" else "server_error",
        code=ended.error_code,
        headers=headers,
    ).response()


async def _parse(request: Request, max_bytes: int) -> ChatCompletionRequest:
    raw: bytes | None
    try:
        raw = await request.body()
    except BodyTooLargeError:  # a body without Content-Length went over the limit while it streamed in
        raw = None
    if raw is None or len(raw) > max_bytes:
        raise APIError(
            413,
            f"request body is larger than {max_bytes} bytes (GUARDCHAT_MAX_BODY_BYTES)",
            type_="invalid_request_error",
            code="body_too_large",
        )
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", type_="invalid_request_error") from None
    except RecursionError:
        raise APIError(400, "request body is nested too deeply", type_="invalid_request_error") from None
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise APIError(
            400, f"invalid request: {where}: {first.get('msg')}", type_="invalid_request_error", param=where or None
        ) from None


def _conversation_id(header: str | None) -> int | None:
    if header is None:
        return None
    try:
        return int(header)
    except ValueError:
        raise APIError(400, f"{CONVERSATION_HEADER} must be a conversation id", type_="invalid_request_error") from None


def _finish_reason(ended: TurnEnded) -> str:
    """OpenAI's: "content_filter" when a rail blocked, "length" when the model hit the max-token limit."""
    if ended.status == "blocked":
        return "content_filter"
    return ended.finish_reason or "stop"


def _usage(ended: TurnEnded) -> dict[str, int]:
    """What the model received and wrote (0 and 0 for a turn an input rail refused: the model saw nothing)."""
    prompt, completion = ended.tokens_in or 0, ended.tokens_out or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _guardchat_field(ended: TurnEnded) -> dict[str, Any]:
    verdict = ended.verdict or {}
    return {
        "status": ended.status,
        "conversation_id": ended.conversation_id,
        "message_id": ended.assistant_message_id,
        "flagged": ended.flagged,
        "rail": verdict.get("rail"),
        "stage": verdict.get("stage"),
        "error": ended.error,
    }


def _completion(cid: str, created: int, model: str, reply: str, ended: TurnEnded) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": _finish_reason(ended),
            }
        ],
        "usage": _usage(ended),
        "guardchat": _guardchat_field(ended),
    }


async def _final(events: AsyncIterator[Any]) -> TurnEnded:
    async for event in events:
        if isinstance(event, TurnEnded):
            return event
    raise RuntimeError("turn ended without a result")


def _chunk(
    cid: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if extra:
        body.update(extra)
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _stream(events: AsyncIterator[Any], cid: str, created: int, model: str) -> AsyncIterator[str]:
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
    sent_any = False
    async for event in events:
        if isinstance(event, ReplyDelta):
            if event.text:
                sent_any = True
                yield _chunk(cid, created, model, {"content": event.text})
        elif isinstance(event, ReplyRetracted):
            # OpenAI's format cannot take text back; the content_filter finish tells clients to drop it.
            sent_any = True
        elif isinstance(event, TurnEnded):
            if event.status == "blocked":
                yield _chunk(cid, created, model, {"content": ("\n\n" if sent_any else "") + event.reply})
            if event.status == "error":
                error = {"message": event.error, "type": "model_error", "code": event.error_code}
                yield f"data: {json.dumps({'error': error})}\n\n"
            yield _chunk(
                cid,
                created,
                model,
                {},
                _finish_reason(event),
                extra={"guardchat": _guardchat_field(event), "usage": _usage(event)},
            )
            break
    yield "data: [DONE]\n\n"
