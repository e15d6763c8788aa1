"""Moved to ``webapp.app`` (the composition root); kept until the test helpers import it from there."""

from webapp.app import build_context, create_app

__all__ = ["build_context", "create_app"]
