"""Call a mounted Gradio page's events over HTTP the way the browser does (queue/join, then queue/data)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import gradio as gr
import httpx


@dataclass(frozen=True)
class EventResult:
    status: int  # HTTP status of the join request
    success: bool
    output: Any  # the outputs, or {"error": message} when the handler raised

    @property
    def error(self) -> str:
        return str(self.output.get("error") or "") if isinstance(self.output, dict) else ""


def event_indexes(demo: gr.Blocks) -> dict[str, int]:
    """api_name → fn_index of every event wired to a Python handler."""
    return {fn.api_name: index for index, fn in demo.fns.items() if fn.fn is not None and fn.api_name}


def _sample(component: Any) -> Any:
    if isinstance(component, gr.State):
        return None
    if isinstance(component, gr.CheckboxGroup):
        return []  # its example is None while it has no choices, which it refuses to parse
    return component.example_payload()


def sample_inputs(demo: gr.Blocks, fn_index: int) -> list[Any]:
    """A well-formed value for each input, so a refusal can only come from the handler, not from parsing."""
    return [_sample(c) for c in demo.fns[fn_index].inputs]


SELECT_EVENT = {"index": [0, 0], "value": 1, "row_value": [1], "col_value": [1], "selected": True}


def run_event(client: httpx.Client, root: str, fn_index: int, data: list[Any], event_data: Any = None) -> EventResult:
    session = uuid.uuid4().hex
    joined = client.post(
        f"{root}/gradio_api/queue/join",
        json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": event_data},
    )
    if joined.status_code != 200:
        return EventResult(joined.status_code, False, joined.text)
    with client.stream("GET", f"{root}/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            message = json.loads(line[6:])
            if message.get("msg") == "process_completed":
                return EventResult(200, bool(message.get("success")), message.get("output"))
    raise AssertionError("the event stream ended without a result")
