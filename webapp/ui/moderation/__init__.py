"""The moderator console at /moderation: queue, flag detail with actions, audit log, stats, export.

Every Gradio event is an HTTP endpoint, so every handler starts with ``_staff(request)``: the user is
read from the signed session and must be a moderator or admin *now*. The services check the role
again inside their own transaction. ``MODERATION_HANDLERS`` names every handler wired to an event;
tests call each one as a plain user, in process and over HTTP.
"""

from webapp.ui.moderation.base import MODERATION_HANDLERS, MODERATION_PATH, NotStaffError
from webapp.ui.moderation.page import ModerationPage, build_moderation_page

__all__ = ["MODERATION_HANDLERS", "MODERATION_PATH", "ModerationPage", "NotStaffError", "build_moderation_page"]
