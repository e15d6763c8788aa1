"""Turning the raw text chunks a model server sends into clean reply deltas.

Servers differ: NeMo sends the whole completion so far in every chunk, TRT-LLM and vLLM send only
the new text, and some echo the prompt first. Each class here fixes one of those differences.
"""

from __future__ import annotations

from collections.abc import Sequence

from webapp.llm.errors import ModelServerError

NEMO_ERROR_PREFIX = "An error occurred"


class CumulativeToDelta:
    """Turns "whole completion so far" chunks into deltas."""

    def __init__(self) -> None:
        self._seen = ""
        self._last = ""

    def feed(self, chunk: str) -> str:
        self._last = chunk
        # A chunk ending in U+FFFD may be a multi-byte character cut in half; the next chunk will
        # repeat it whole, so only emit up to it.
        settled = chunk.rstrip("\ufffd")
        # If the server re-decoded text already emitted, it can't be taken back: continue by length.
        delta = settled[len(self._seen) :]
        if delta:
            self._seen = settled
        return delta

    def flush(self) -> str:
        """At the end of the stream a trailing U+FFFD is real: emit it."""
        rest = self._last[len(self._seen) :] if self._last.startswith(self._seen) else ""
        self._seen = self._last
        return rest


class EchoStripper:
    """Removes the prompt when the server echoes it before the completion."""

    def __init__(self, prompt: str) -> None:
        self._prompt = prompt
        self._held = ""
        self._decided = not prompt

    def feed(self, delta: str) -> str:
        if self._decided:
            return delta
        self._held += delta
        if self._held.startswith(self._prompt):
            self._decided = True
            return self._held[len(self._prompt) :]
        if self._prompt.startswith(self._held):
            return ""  # still possibly the echo: wait for more
        self._decided = True
        return self._held

    def flush(self) -> str:
        if self._decided:
            return ""
        self._decided = True
        return self._held


class InBandErrorCheck:
    """NeMo reports failures as reply text; raise them instead of showing them as a reply."""

    def __init__(self, model_name: str) -> None:
        self._model_name = model_name
        self._held = ""
        self._decided = False

    def feed(self, delta: str) -> str:
        if self._decided:
            return delta
        self._held += delta
        stripped = self._held.lstrip()
        if stripped.startswith(NEMO_ERROR_PREFIX):
            raise ModelServerError(
                f"Model {self._model_name!r} failed on the server: {stripped[:500]!r}. "
                "Check the Triton server log; retrying may help if the failure was transient."
            )
        if NEMO_ERROR_PREFIX.startswith(stripped):
            return ""
        self._decided = True
        return self._held

    def flush(self) -> str:
        if self._decided:
            return ""
        self._decided = True
        return self._held


class StopScanner:
    """Cuts the reply at the first stop string, including one split across chunks.

    Text that could be the start of a stop string is held back until the next chunk settles it,
    so no part of a stop string is ever emitted.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = [s for s in dict.fromkeys(stop) if s]
        self._longest = max((len(s) for s in self._stop), default=0)
        self._held = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        if not self._stop:
            return delta
        text = self._held + delta
        cut = min((i for i in (text.find(s) for s in self._stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = self._partial_stop_length(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_stop_length(self, text: str) -> int:
        """Length of the longest end of ``text`` that is the start of some stop string."""
        for length in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-length:]
            if any(s.startswith(tail) for s in self._stop):
                return length
        return 0
