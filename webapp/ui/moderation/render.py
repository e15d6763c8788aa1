"""Moderation data → what the page shows: table rows, and the flag detail as HTML.

Every piece of user or model text goes through ``html.escape`` before it lands in markup, so a flagged
``<script>`` or ``<img onerror>`` is shown as the text it is, never run. Numbers and labels we produce
are escaped too, because rail names and reasons come from configuration and model output.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from webapp.guard.verdict import Verdict
from webapp.moderation.detail import FlagDetail, TranscriptTurn
from webapp.moderation.queue import QueueItem
from webapp.services.moderation import PAST_TENSE, AuditEntry
from webapp.ui.moderation.filters import SOURCE_LABELS

QUEUE_HEADERS = ["Flag", "Raised (UTC)", "Status", "Source", "Rail", "User", "Excerpt", "Assigned", "Conv. flags"]
QUEUE_TYPES = ["number", "str", "str", "str", "str", "str", "str", "str", "number"]
AUDIT_HEADERS = ["When (UTC)", "Moderator", "Action", "Flag", "User", "Note", "Details"]
EXCERPT_CHARS = 140
BLOCKED_TITLE = "Never shown to the user · visible to moderators only"
ROLE_LABELS = {"user": "User", "assistant": "Assistant", "system": "System"}
STAGE_LABELS = {"input": "input rails", "output": "output rails", "error": "a rail error"}
EMPTY_DETAIL = '<div class="gc-mod-empty">Pick a flag in the queue (click its row), or type its number above.</div>'


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms" if value >= 1 else "<1 ms"


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _short(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


# --- tables (the Dataframe shows cells as plain text) -----------------------------------------------


def queue_rows(items: Sequence[QueueItem]) -> list[list[Any]]:
    return [
        [
            item.id,
            when(item.created_at),
            item.status,
            source_label(item.source),
            item.rail or "—",
            item.username,
            _short(item.excerpt or item.reason),
            item.assignee or "",
            item.conversation_flags,
        ]
        for item in items
    ]


def _details_text(details: dict[str, Any]) -> str:
    if not details:
        return ""
    if "from" in details and "to" in details:
        return f"{details['from']} → {details['to']}"
    parts = (f"{k}: {json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v}" for k, v in details.items())
    return ", ".join(parts)


def audit_rows(entries: Sequence[AuditEntry]) -> list[list[Any]]:
    return [
        [
            when(e.created_at),
            e.actor,
            e.action,
            f"#{e.flag_id}" if e.flag_id else "",
            e.target_user or "",
            e.note,
            _details_text(e.details),
        ]
        for e in entries
    ]


# --- the flag detail --------------------------------------------------------------------------------


def _badge(text: str, kind: str) -> str:
    return f'<span class="gc-badge gc-badge-{_e(kind)}">{_e(text)}</span>'


def _header(d: FlagDetail) -> str:
    rail = f" · rail <b>{_e(d.rail)}</b>" if d.rail else ""
    resolved = ""
    if d.resolved_at:
        resolved = f" · {_e(d.status)} by <b>{_e(d.resolved_by or 'someone')}</b> at {_e(when(d.resolved_at))} UTC"
    assignee = f"<b>{_e(d.assignee)}</b>" if d.assignee else "nobody"
    return (
        '<div class="gc-mod-head">'
        f"<h2>Flag #{d.id} {_badge(d.status, d.status)}</h2>"
        f'<div class="gc-mod-meta">{_e(source_label(d.source))}{rail} · raised {_e(when(d.created_at))} UTC'
        f"{resolved} · assigned to {assignee}</div>"
        f'<div class="gc-mod-reason"><span class="gc-label">Reason</span> {_e(d.reason) or "<i>none given</i>"}</div>'
        "</div>"
    )


def _user_card(d: FlagDetail) -> str:
    h = d.history
    counts = " · ".join(
        f"<b>{h.by_status.get(status, 0)}</b> {status}" for status in ("open", "escalated", "confirmed", "dismissed")
    )
    banned = " " + _badge("banned", "banned") if d.user_banned else ""
    deleted = " (deleted by its owner)" if d.conversation_deleted else ""
    return (
        '<section class="gc-mod-card gc-mod-user"><h3>User</h3>'
        f'<p class="gc-mod-username"><b>{_e(d.username)}</b> <span class="gc-dim">{_e(d.user_role)} · user #{d.user_id}'
        f"</span>{banned}</p>"
        f'<p><span class="gc-label">Flag history</span> <b>{h.total}</b> flag{"s" if h.total != 1 else ""}: '
        f"{counts}</p>"
        f'<p><span class="gc-label">Conversation</span> “{_e(d.conversation_title)}” #{d.conversation_id}{deleted}'
        f" · <b>{d.conversation_flags}</b> flag{'s' if d.conversation_flags != 1 else ''} raised in it</p>"
        "</section>"
    )


def _checks_table(verdict: Verdict) -> str:
    rows = []
    for check in verdict.checks:
        result = "blocked" if check.blocked else "passed"
        rows.append(
            f'<tr class="{"gc-check-blocked" if check.blocked else ""}"><td>{_e(check.name)}</td>'
            f"<td>{_e(check.stage)}</td><td>{result}</td><td>{_e(check.reason or '')}</td>"
            f'<td class="gc-num">{_score(check.score)}</td><td class="gc-num">{_ms(check.duration_ms)}</td></tr>'
        )
    if not rows:
        return '<p class="gc-dim">No rail checks were recorded.</p>'
    return (
        '<table class="gc-mod-table"><thead><tr><th>Rail</th><th>Stage</th><th>Result</th><th>Reason</th>'
        f'<th class="gc-num">Score</th><th class="gc-num">Time</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _model_calls(verdict: Verdict) -> str:
    if not verdict.model_calls:
        return ""
    items = []
    for call in verdict.model_calls:
        items.append(
            '<div class="gc-model-call">'
            f'<p><span class="gc-label">{_e(call.task.replace("_", " "))}</span> the guard model answered '
            f'<q class="gc-answer">{_e(call.completion.strip())}</q> in {_ms(call.duration_ms)}</p>'
            f"<details><summary>Prompt sent to the guard model</summary><pre>{_e(call.prompt)}</pre></details>"
            "</div>"
        )
    return f"<h4>Self-check model</h4>{''.join(items)}"


def _verdict_card(d: FlagDetail) -> str:
    if d.verdict is None:
        body = '<p class="gc-dim">This flag has no guard verdict (a user report on a reply the rails allowed).</p>'
        if d.verdict_error:
            raw = json.dumps(d.raw_verdict, ensure_ascii=False, indent=1)
            body = f'<p class="gc-warn">{_e(d.verdict_error)}</p><pre>{_e(raw)}</pre>'
        return f'<section class="gc-mod-card gc-mod-verdict"><h3>Guard verdict</h3>{body}</section>'
    v = d.verdict
    if v.allowed:
        decision = "The rails <b>allowed</b> this reply."
    else:
        stage = STAGE_LABELS.get(v.stage or "", v.stage)
        decision = f"Blocked by <b>{_e(v.rail or 'an unnamed rail')}</b> during {_e(stage)}."
    facts = [f'<p class="gc-mod-decision">{decision}</p>']
    if v.reason:
        facts.append(f'<p><span class="gc-label">Reason</span> {_e(v.reason)}</p>')
    if v.score is not None:
        facts.append(f'<p><span class="gc-label">Score</span> {_score(v.score)}</p>')
    facts.append(f'<p><span class="gc-label">Rails took</span> {_ms(v.duration_ms)} in all</p>')
    return (
        '<section class="gc-mod-card gc-mod-verdict"><h3>Guard verdict</h3>'
        f"{''.join(facts)}{_checks_table(v)}{_model_calls(v)}</section>"
    )


def _blocked(d: FlagDetail) -> str:
    if d.blocked_text is None:
        return ""
    return (
        f'<section class="gc-mod-blocked" aria-label="{_e(BLOCKED_TITLE)}">'
        f"<h3>{_badge('blocked text', 'blocked-solid')} {_e(BLOCKED_TITLE)}</h3><pre>{_e(d.blocked_text)}</pre>"
        "</section>"
    )


def _turn(turn: TranscriptTurn, blocked_note: str) -> str:
    classes = ["gc-turn", f"gc-role-{_e(turn.role)}"]
    tags = []
    if turn.flagged:
        classes.append("gc-flagged")
        tags.append(_badge("Flagged turn", "flagged"))
    if turn.status != "complete":
        tags.append(_badge(turn.status, turn.status))
    if turn.withdrawn:
        classes.append("gc-withdrawn")
        tags.append(_badge("withdrawn by regenerate/edit", "withdrawn"))
    anchor = ' id="gc-flagged-turn"' if turn.flagged else ""
    body = _e(turn.content) if turn.content.strip() else '<i class="gc-dim">(empty)</i>'
    note = f'<div class="gc-flag-note">{_e(blocked_note)}</div>' if turn.flagged and blocked_note else ""
    return (
        f'<div class="{" ".join(classes)}"{anchor} data-message-id="{turn.id}">'
        f'<div class="gc-turn-head"><b>{_e(ROLE_LABELS.get(turn.role, turn.role))}</b>'
        f' <span class="gc-dim">{_e(when(turn.created_at))}</span> {" ".join(tags)}</div>'
        f'<div class="gc-turn-body">{body}</div>{note}</div>'
    )


def _blocked_note(d: FlagDetail) -> str:
    if d.blocked_text is None:
        return ""
    if d.source == "input_rail":
        return "Blocked before it reached the model; the user got the refusal below."
    if d.source == "output_rail":
        return "The user saw this refusal instead of the blocked text shown above."
    return "The rail failed, so the turn was blocked (fail closed)."


def _transcript(d: FlagDetail) -> str:
    note = _blocked_note(d)
    rendered = "".join(_turn(t, note) for t in d.transcript)
    intro = '<p class="gc-dim">Each turn shows what the user saw. Withdrawn turns were replaced by a regenerate.</p>'
    return f'<section class="gc-mod-transcript"><h3>Transcript</h3>{intro}{rendered}</section>'


def _activity(d: FlagDetail) -> str:
    if not d.events:
        return '<section class="gc-mod-activity"><h3>Activity</h3><p class="gc-dim">No action yet.</p></section>'
    items = []
    for e in d.events:
        note = f" — “{_e(e.note)}”" if e.note else ""
        items.append(
            f'<li><span class="gc-dim">{_e(when(e.created_at))}</span> <b>{_e(e.actor)}</b> '
            f"{_e(PAST_TENSE.get(e.action, e.action))}{note}</li>"
        )
    return f'<section class="gc-mod-activity"><h3>Activity</h3><ol>{"".join(items)}</ol></section>'


def flag_detail_html(d: FlagDetail) -> str:
    return (
        '<div class="gc-mod-detail">'
        f"{_header(d)}"
        f'<div class="gc-mod-grid">{_user_card(d)}{_verdict_card(d)}</div>'
        f"{_blocked(d)}{_transcript(d)}{_activity(d)}"
        "</div>"
    )
