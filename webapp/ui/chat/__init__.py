"""The chat page: sidebar of conversations, the streamed chat, message actions, feedback and settings.

Every Gradio event is also an HTTP endpoint. Each handler therefore starts by resolving the acting user
from the signed session (``acting_user``) and passes that user to the services or to ``ChatService``,
which scope everything by it; ids that come from the page are only ever looked up *within* that user's
data. ``EVENT_HANDLERS`` lists every handler wired to an event, and a test calls each one over HTTP.
"""

from webapp.ui.chat.base import EVENT_HANDLERS
from webapp.ui.chat.conversations import UNAVAILABLE_STATUS
from webapp.ui.chat.feedback import FEEDBACK_STATUS, REPORTED_STATUS
from webapp.ui.chat.page import ChatPage, build_chat_page
from webapp.ui.chat.turns import CHECKING_STATUS, STOPPED_STATUS

__all__ = [
    "CHECKING_STATUS",
    "EVENT_HANDLERS",
    "FEEDBACK_STATUS",
    "REPORTED_STATUS",
    "STOPPED_STATUS",
    "UNAVAILABLE_STATUS",
    "ChatPage",
    "build_chat_page",
]
