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

    def check(self, chunk: str) -> None:
        """A raw server chunk: NeMo replaces the whole (cumulative) text with the error, even mid-stream."""
        stripped = chunk.lstrip()
        if stripped.startswith(NEMO_ERROR_PREFIX):
            raise ModelServerError(
                f"Model {self._model_name!r} failed on the server: {stripped[:500]!r}. "
                "Check the Triton server log; retrying may help if the failure was transient."
            )

    def feed(self, delta: str) -> str:
        """Hold back the start of the reply while it could still become the error prefix."""
        if self._decided:
            return delta
        self._held += delta
        self.check(self._held)
        if NEMO_ERROR_PREFIX.startswith(self._held.lstrip()):
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

    Text that could be the start of a stop string is held back until later text settles it, so no
    part of a stop string is ever emitted, and a longer stop string that starts earlier wins over a
    shorter one found later in the same text.
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
        cut = self._first_match(text)
        pending = self._first_partial(text)
        if cut is not None and (pending is None or cut < pending):
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep_from = len(text) if pending is None else pending
        self._held = text[keep_from:]
        return text[:keep_from]

    def flush(self) -> str:
        """End of the stream: what was held back, up to a stop string it holds."""
        held, self._held = self._held, ""
        if self.stopped:
            return ""
        cut = self._first_match(held)
        if cut is not None:
            self.stopped = True
            return held[:cut]
        return held

    def _first_match(self, text: str) -> int | None:
        return min((i for i in (text.find(s) for s in self._stop) if i >= 0), default=None)

    def _first_partial(self, text: str) -> int | None:
        """Earliest position from which the rest of ``text`` is a proper start of some stop string."""
        for start in range(max(0, len(text) - self._longest + 1), len(text)):
            tail = text[start:]
            if any(len(tail) < len(s) and s.startswith(tail) for s in self._stop):
                return start
        return None


class ReplyCleaner:
    """The whole pipeline for one reply: raw server chunks in, clean deltas out (see the module docstring)."""

    def __init__(
        self,
        *,
        model_name: str,
        prompt: str,
        stop: Sequence[str],
        cumulative: bool,
        may_echo_prompt: bool,
        in_band_errors: bool,
    ) -> None:
        self._cumulative = CumulativeToDelta() if cumulative else None
        self._echo = EchoStripper(prompt) if may_echo_prompt else None
        self._in_band = InBandErrorCheck(model_name) if in_band_errors else None
        self._stop = StopScanner(stop)

    @property
    def stopped(self) -> bool:
        """A stop string was reached: the rest of the generation is not wanted."""
        return self._stop.stopped

    def feed(self, chunk: str) -> str:
        if self._in_band:
            self._in_band.check(chunk)
        text = self._cumulative.feed(chunk) if self._cumulative else chunk
        if self._echo:
            text = self._echo.feed(text)
        if self._in_band:
            text = self._in_band.feed(text)
        return self._stop.feed(text)

    def finish(self) -> str:
        """The stream ended: whatever was held back for a decision that can now be made."""
        text = self._cumulative.flush() if self._cumulative else ""
        if self._echo:
            text = self._echo.feed(text) + self._echo.flush()
        if self._in_band:
            text = self._in_band.feed(text) + self._in_band.flush()
        return self._stop.feed(text) + self._stop.flush()
