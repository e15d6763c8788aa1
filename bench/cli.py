"""A benchmark's command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def bench_args(doc: str | None, help_text: str, argv: Sequence[str] | None = None, **extra: str) -> Any:
    """A benchmark's command line: ``--quick`` (a smoke run) plus ``extra`` boolean flags (name -> help)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=help_text)
    for name, text in extra.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
    return parser.parse_args(argv)
