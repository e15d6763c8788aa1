"""Real turns that raise each kind of flag, resolved by a moderator: the moderation loop's test data.

Turns run through ChatService with the real rails and the scripted model (registered through the production
seam); the caller's settings select the scripted backend (the ``scripted_chat_settings`` fixture).
"""

from __future__ import annotations

from sqlalchemy import select

from tests.support.guard.scripted_model import SCRIPT
from webapp.chat.events import TurnEnded
from webapp.chat.service import ChatService
from webapp.guard.turn import TurnGuard
from webapp.settings import Settings
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.flags import act_on_flag, report_message
from webapp.store.models import Flag, User

ABUSE = "you are a worthless idiot, fuck you"
# An ordinary opening, then abuse the output abuse rule blocks (the reply rail reads a dozen repeats of one
# three-word sentence as harmful at 0.65, so the opening is a real sentence).
ABUSIVE_REPLY = (
    "Thanks for asking, and I hope your week is going well so far. " * 2 + "You are a fucking worthless idiot."
)


async def _turn(service: ChatService, user: User, text: str) -> TurnEnded:
    events = [e async for e in service.send(user=user, text=text)]
    ended = events[-1]
    assert isinstance(ended, TurnEnded)
    return ended


async def seed_flagged_turns(database: Database, settings: Settings) -> dict[str, int]:
    """Four flags: a blocked request (confirmed), a blocked reply (dismissed), a reported reply (confirmed),
    and a blocked request nobody has resolved yet."""
    service = ChatService(database=database, guard=TurnGuard.load(settings), settings=settings)
    with database.write() as s:
        alice = users.create_user(s, username="alice", password="password123")
        moderator = users.create_user(s, username="mod", password="password123", role="moderator")
    await _turn(service, alice, f"{ABUSE}, mail me at alice@example.org")
    SCRIPT.reply = lambda _: ABUSIVE_REPLY
    blocked_reply = await _turn(service, alice, "Say something nice")
    assert blocked_reply.status == "blocked"
    SCRIPT.reply = lambda text: f"Here is a calm answer about {text}."
    allowed = await _turn(service, alice, "Tell me about tea")
    assert allowed.status == "complete"
    await _turn(service, alice, f"{ABUSE} again")
    with database.write() as s:
        report_message(s, user=alice, message_id=allowed.assistant_message_id, reason="this was rude")
        flags = {(f.source, f.id) for f in s.scalars(select(Flag))}
        ids = sorted(i for source, i in flags if source == "input_rail")
        by_source = {
            "input": ids[0],
            "open": ids[1],
            "output": next(i for source, i in flags if source == "output_rail"),
            "report": next(i for source, i in flags if source == "user_report"),
        }
        act_on_flag(s, actor=moderator, flag_id=by_source["input"], action="confirm")
        act_on_flag(s, actor=moderator, flag_id=by_source["output"], action="dismiss")
        act_on_flag(s, actor=moderator, flag_id=by_source["report"], action="confirm")
    return by_source
