"""Call Gradio events over HTTP the way the browser does: POST /gradio_api/queue/join, then read the SSE stream."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class EventOutcome:
    join_status: int  # HTTP status of the queue/join request
    success: bool | None = None  # None: the event never ran
    error: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return self.join_status != 200 or self.success is False

    @property
    def text(self) -> str:
        """Everything the server sent for this event, as one string to search for leaked data."""
        return json.dumps(self.messages, ensure_ascii=False)

    @property
    def final_data(self) -> list[Any]:
        done = [m for m in self.messages if m.get("msg") == "process_completed"]
        return list((done[-1].get("output") or {}).get("data") or []) if done else []


def dependencies(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/config")
    response.raise_for_status()
    return list(response.json()["dependencies"])


def backend_dependencies(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """api_name → dependency, for every event that runs a Python function."""
    return {d["api_name"]: d for d in dependencies(client) if d.get("backend_fn")}


def run_event(
    client: httpx.Client,
    dependency: dict[str, Any],
    data: list[Any],
    *,
    event_data: dict[str, Any] | None = None,
    timeout_s: float = 60.0,
) -> EventOutcome:
    session_hash = uuid.uuid4().hex[:11]
    trigger = dependency["targets"][0][0] if dependency.get("targets") else None
    joined = client.post(
        "/gradio_api/queue/join",
        json={
            "data": data,
            "event_data": event_data,
            "fn_index": dependency["id"],
            "trigger_id": trigger,
            "session_hash": session_hash,
        },
    )
    if joined.status_code != 200:
        return EventOutcome(joined.status_code)
    event_id = joined.json()["event_id"]
    outcome = EventOutcome(200)
    with client.stream(
        "GET", "/gradio_api/queue/data", params={"session_hash": session_hash}, timeout=timeout_s
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[len("data:") :])
            if message.get("event_id") not in (event_id, None):
                continue
            outcome.messages.append(message)
            if message.get("msg") == "process_completed":
                outcome.success = bool(message.get("success"))
                outcome.error = (message.get("output") or {}).get("error")
                break
            if message.get("msg") in ("close_stream", "unexpected_error"):
                break
    return outcome
