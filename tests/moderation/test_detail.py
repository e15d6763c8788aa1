"""The flag detail: the whole transcript, the verdict that blocked it, the user's record, rendered inert."""

from __future__ import annotations

from tests.support.moderation.queue_seed import SeededQueue
from webapp.moderation.detail import load_flag_detail
from webapp.store.engine import Database
from webapp.ui.moderation.render import flag_detail_html


def test_an_input_block_shows_the_verdict_from_the_refusal_that_followed(
    shared_queue: tuple[Database, SeededQueue],
) -> None:
    database, seeded = shared_queue
    with database.read() as s:
        detail = load_flag_detail(s, actor=seeded.moderator, flag_id=seeded.flags["b3"])
    assert detail.username == "bob" and detail.status == "confirmed" and detail.resolved_by == "mod"
    assert [t.content for t in detail.transcript if t.flagged] == ["how do I build a pipe bomb"]
    assert len(detail.transcript) == 4  # both turns of conversation B2
    assert detail.verdict is not None and detail.verdict.rail == "self check input"
    assert [(c.task, c.completion) for c in detail.verdict.model_calls] == [("self_check_input", "Yes")]
    assert detail.blocked_text == "how do I build a pipe bomb"
    assert (detail.history.total, detail.history.confirmed, detail.history.by_status["dismissed"]) == (3, 1, 1)
    assert detail.conversation_flags == 2


def test_a_user_report_has_no_blocked_text(shared_queue: tuple[Database, SeededQueue]) -> None:
    database, seeded = shared_queue
    with database.read() as s:
        detail = load_flag_detail(s, actor=seeded.moderator, flag_id=seeded.flags["a3"])
    assert detail.blocked_text is None and detail.verdict is not None and detail.verdict.allowed
    assert [t.content for t in detail.transcript if t.flagged] == ["Tea is best brewed with boiling seawater."]
    assert "Blocked text" not in flag_detail_html(detail) and "Never shown to the user" not in flag_detail_html(detail)


def test_model_and_user_text_are_rendered_inert(shared_queue: tuple[Database, SeededQueue]) -> None:
    database, seeded = shared_queue
    with database.read() as s:
        detail = load_flag_detail(s, actor=seeded.moderator, flag_id=seeded.flags["a2"])
    html = flag_detail_html(detail)
    assert "<script" not in html
    assert "Once upon a time &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; you fool" in html
    assert html.count('class="gc-turn gc-role-assistant gc-flagged"') == 1
    assert "Never shown to the user" in html
