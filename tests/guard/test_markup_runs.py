"""The markup neutraliser copies runs of plain text at once: the same text and findings as one character at a
time, whole or streamed in pieces."""

from __future__ import annotations

import random

from webapp.guard.markup import MarkupNeutraliser, neutralise

PIECES = [*"ab c\n\n  `~<>![]()\\:", "```", "~~~", "<img src=x>", "![x](y)", "[a]: javascript:x", "](data:", "\t", "é"]


def _one_char_at_a_time(text: str) -> tuple[str, dict[str, int]]:
    neutraliser = MarkupNeutraliser()
    shown = "".join(neutraliser.feed(char) for char in text) + neutraliser.finish()
    return shown, dict(neutraliser.findings)


def test_a_plain_run_stops_at_every_character_that_may_start_markup_or_a_line() -> None:
    stops = set(MarkupNeutraliser._MARKUP_STARTS) | {"\n"}
    for char in map(chr, range(32, 0x250)):
        run = MarkupNeutraliser._PLAIN_RUN.match(char + "x")
        assert run is not None
        assert (run.end() == 0) == (char in stops - {"\n"}), char
    assert MarkupNeutraliser._PLAIN_RUN.match("ab\ncd").end() == 3  # up to and with the line end, not past it


def test_runs_give_what_single_characters_give() -> None:
    rng = random.Random(15)
    for _ in range(3000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40)))
        report = neutralise(text)
        assert (report.text, report.findings) == _one_char_at_a_time(text), text
