"""Moved to ``webapp.context``; kept until the test helpers import it from there."""

from webapp.context import AppContext

__all__ = ["AppContext"]
