"""Drive the chat page's Gradio events over HTTP as the browser does (queue/join + SSE), by element id."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support.resilience.chat_api import PASSWORD
from tests.support.ui.gradio_http import EventOutcome, backend_dependencies, run_event

# What the page sends for each input element when the user just types and presses Enter.
DEFAULT_INPUTS: dict[str, Any] = {
    "gc-input": "",
    "gc-conversation-id": None,
    "gc-system-prompt": "",
    "gc-temperature": 0.7,
    "gc-top-p": 0.9,
    "gc-top-k": 40,
    "gc-max-new-tokens": 256,
}


@contextmanager
def signed_in(url: str, username: str) -> Iterator[httpx.Client]:
    """A browser-like client with ``username``'s session cookie, from the real sign-in form."""
    with httpx.Client(base_url=url, timeout=120) as client:
        response = client.post("/login", data={"username": username, "password": PASSWORD})
        assert response.status_code == 303, response.text
        yield client


def page_inputs(client: httpx.Client, handler: str, values: dict[str, Any]) -> list[Any]:
    """The event's input values in the page's order, from element ids (unnamed inputs get None)."""
    config = client.get("/config").json()
    components = {c["id"]: c for c in config["components"]}
    dependency = backend_dependencies(client)[handler]
    merged = {**DEFAULT_INPUTS, **values}
    return [merged.get(components[cid]["props"].get("elem_id")) for cid in dependency["inputs"]]


def send_message(client: httpx.Client, text: str, conversation_id: int | None = None) -> EventOutcome:
    """Type ``text`` and press Enter; the outcome holds every update the page received."""
    values = {"gc-input": text, "gc-conversation-id": conversation_id}
    dependency = backend_dependencies(client)["send_message"]
    return run_event(client, dependency, page_inputs(client, "send_message", values), timeout_s=300)


def run_raw_event(client: httpx.Client, dependency: dict[str, Any], data: list[Any]) -> EventOutcome:
    """Like run_event, but the JSON is ASCII-escaped, so text no UTF-8 encoder accepts (lone surrogates) goes out."""
    session_hash = uuid.uuid4().hex[:11]
    body = {"data": data, "fn_index": dependency["id"], "session_hash": session_hash, "event_data": None}
    joined = client.post(
        "/gradio_api/queue/join", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    outcome = EventOutcome(joined.status_code)
    if joined.status_code != 200:
        return outcome
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[len("data:") :])
                outcome.messages.append(message)
                if message.get("msg") == "process_completed":
                    outcome.success = bool(message.get("success"))
                    outcome.error = (message.get("output") or {}).get("error")
                    break
    return outcome
