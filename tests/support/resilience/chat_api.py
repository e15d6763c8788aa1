"""A small client for GuardChat's /v1 chat API as the tests use it: whole turns, and streams read chunk by chunk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from webapp.store import api_keys, users
from webapp.store.engine import Database
from webapp.store.models import User

CONVERSATION_HEADER = "X-GuardChat-Conversation"
PASSWORD = "password123"


def create_user_with_key(db: Database, username: str, role: str = "user") -> tuple[User, str]:
    with db.write() as session:
        user = users.create_user(session, username=username, password=PASSWORD, role=role)
        _, plaintext = api_keys.create_api_key(session, user=user, name="tests")
    return user, plaintext


def _body(text: str, stream: bool, **extra: Any) -> dict[str, Any]:
    return {"model": "guardchat", "messages": [{"role": "user", "content": text}], "stream": stream, **extra}


def _headers(key: str, conversation_id: int | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if conversation_id is not None:
        headers[CONVERSATION_HEADER] = str(conversation_id)
    return headers


@dataclass
class Turn:
    """One finished API turn: the HTTP status, the reply text and GuardChat's own fields."""

    status_code: int
    body: dict[str, Any]
    conversation_id: int | None

    @property
    def reply(self) -> str:
        return str(self.body["choices"][0]["message"]["content"])

    @property
    def guardchat(self) -> dict[str, Any]:
        return dict(self.body.get("guardchat") or {})

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.body.get("error") or {})


def complete(
    url: str, key: str, text: str, *, conversation_id: int | None = None, timeout_s: float = 300.0, **extra: Any
) -> Turn:
    response = httpx.post(
        f"{url}/v1/chat/completions",
        json=_body(text, False, **extra),
        headers=_headers(key, conversation_id),
        timeout=timeout_s,
    )
    header = response.headers.get(CONVERSATION_HEADER)
    return Turn(response.status_code, response.json(), int(header) if header else None)


@dataclass
class Stream:
    """A streamed turn being read: ``events()`` yields each SSE data object (the final [DONE] ends it).

    Reading stops and resumes without closing the response: the server sees no disconnect until the
    ``stream()`` block ends.
    """

    response: httpx.Response
    text: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    _lines: Iterator[str] | None = field(default=None, repr=False)

    @property
    def conversation_id(self) -> int:
        return int(self.response.headers[CONVERSATION_HEADER])

    def events(self) -> Iterator[dict[str, Any]]:
        if self._lines is None:
            self._lines = self.response.iter_lines()
        while (line := next(self._lines, None)) is not None:
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                return
            event = json.loads(data)
            if "error" in event:
                self.errors.append(event["error"])
            else:
                self.text += event["choices"][0]["delta"].get("content") or ""
                if event["choices"][0].get("finish_reason"):
                    self.final = event
            yield event

    def read_all(self) -> Stream:
        for _ in self.events():
            pass
        return self

    def read_until(self, characters: int) -> None:
        """Read until at least ``characters`` of reply text have arrived."""
        for _ in self.events():
            if len(self.text) >= characters:
                return
        raise AssertionError(f"the stream ended after {len(self.text)} characters: {self.text!r}")


@contextmanager
def stream(
    url: str, key: str, text: str, *, conversation_id: int | None = None, timeout_s: float = 300.0, **extra: Any
) -> Iterator[Stream]:
    with (
        httpx.Client(timeout=timeout_s) as client,
        client.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json=_body(text, True, **extra),
            headers=_headers(key, conversation_id),
        ) as response,
    ):
        assert response.status_code == 200, response.read().decode(errors="replace")
        yield Stream(response)
