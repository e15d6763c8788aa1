"""The queue filter bar's choices; the form itself (``QueueForm``) is ``webapp.moderation.queue_form``."""

from __future__ import annotations

from webapp.moderation.queue_form import ANY, QueueForm, day_range, parse_day

__all__ = ["ANY", "QueueForm", "day_range", "parse_day"]

STATUS_CHOICES = [
    ("Open", "open"),
    ("Escalated", "escalated"),
    ("Confirmed", "confirmed"),
    ("Dismissed", "dismissed"),
    ("Any status", ANY),
]
SOURCE_CHOICES = [
    ("Any source", ANY),
    ("Input rail", "input_rail"),
    ("Output rail", "output_rail"),
    ("Rail error", "rail_error"),
    ("User report", "user_report"),
]
ASSIGNMENT_CHOICES = [("Anyone", "anyone"), ("Assigned to me", "me"), ("Unassigned", "unassigned")]
SORT_CHOICES = [
    ("Newest first", "newest"),
    ("Oldest first", "oldest"),
    ("Most flags in the conversation", "most_flagged"),
]
SOURCE_LABELS = {value: label for label, value in SOURCE_CHOICES}
ANY_RAIL = ("Any rail", ANY)
