"""Make dangerous markup in model replies inert, for markdown renderers (the chat UI) and API clients alike.

What is neutralised, outside fenced and inline code (where renderers show text verbatim anyway):
- raw HTML (``<script>``, ``<img onerror=…>``, ``<iframe>``…): the ``<`` is backslash-escaped, so it renders as text;
- every markdown image (``![alt](url)``, ``![alt][ref]``): the ``[`` is escaped. A rendered image is fetched by
  the browser without a click, which lets a prompt-injected reply exfiltrate chat data in the URL. The app
  shows no images of its own, so no image is kept;
- links and link definitions whose target uses a script-capable scheme (``javascript:``, ``vbscript:``,
  ``data:``, ``file:``): the link syntax is escaped, so it renders as text.

The text is escaped rather than blocked: the reply stays readable and nothing the model said is hidden
from the user, only made inert. The transform is prefix-stable so it can run on a stream: a decision at
one position depends only on the text before it and a bounded look-ahead, and an inline code span is held
back until it closes, so streamed output equals the output for the whole text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_LOOKAHEAD = 80
_MAX_CODE_SPAN = 400
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})")
_DANGEROUS_TARGET = re.compile(r"[ \t]{0,8}<?[ \t]{0,8}(javascript|vbscript|data|file)[ \t]{0,8}:", re.IGNORECASE)
_LINK_DEFINITION = re.compile(r"\[[^\]\n]{1,40}\]:")
_TAG_START = re.compile(r"[A-Za-z/!?]")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")

_KIND_LABELS = {
    "html": "HTML tag",
    "image": "markdown image",
    "link": "script link",
}


@dataclass(frozen=True)
class MarkupReport:
    text: str
    findings: dict[str, int]

    @property
    def changed(self) -> bool:
        return bool(self.findings)


def describe(findings: dict[str, int]) -> str:
    """'made inert: 2 HTML tags, 1 markdown image'."""
    parts = []
    for kind, count in sorted(findings.items()):
        label = _KIND_LABELS.get(kind, kind)
        parts.append(f"{count} {label}{'' if count == 1 else 's'}")
    return "made inert: " + ", ".join(parts)


class MarkupNeutraliser:
    """Feed raw model text as it streams; get back the neutralised text that is safe to show so far."""

    def __init__(self) -> None:
        self._raw = ""
        self._pos = 0
        self._fence: str | None = None  # the opening fence run while inside a fenced code block
        self.findings: Counter[str] = Counter()

    def feed(self, text: str) -> str:
        self._raw += text
        return self._advance(final=False)

    def finish(self) -> str:
        return self._advance(final=True)

    def _escaped(self, index: int) -> bool:
        backslashes = 0
        while index - backslashes - 1 >= 0 and self._raw[index - backslashes - 1] == "\\":
            backslashes += 1
        return backslashes % 2 == 1

    def _decidable(self, i: int, lookahead: int, *, final: bool) -> bool:
        """Whether ``lookahead`` characters after ``i`` are known (patterns never cross a line end)."""
        raw = self._raw
        return final or len(raw) - i > lookahead or "\n" in raw[i : i + lookahead + 1]

    def _at_line_start(self, i: int) -> bool:
        return i == 0 or self._raw[i - 1] == "\n"

    def _advance(self, *, final: bool) -> str:
        out: list[str] = []
        i = self._pos
        while i < len(self._raw):
            if self._fence is not None:
                step = self._fenced_line(i, out, final=final)
            else:
                step = self._unfenced(i, out, final=final)
            if step is None:
                break  # undecided: hold the rest back until more text arrives (or the stream ends)
            i = step
        self._pos = i
        return "".join(out)

    # Each step below appends the safe text for what it consumed to ``out`` and returns where the next step
    # starts, or None when the text seen so far cannot decide it yet (nothing is appended then).

    def _verbatim_line(self, i: int, out: list[str]) -> int:
        end = self._raw.find("\n", i)
        end = len(self._raw) if end == -1 else end + 1
        out.append(self._raw[i:end])
        return end

    def _literal(self, i: int, out: list[str]) -> int:
        out.append(self._raw[i])
        return i + 1

    def _fenced_line(self, i: int, out: list[str], *, final: bool) -> int | None:
        """Inside a fenced code block: a line start may close the fence; the line is verbatim either way."""
        if self._at_line_start(i):
            if not self._decidable(i, _LOOKAHEAD, final=final):
                return None
            if self._closes_fence(i):
                self._fence = None
        # Verbatim to the end of the line: the next decision is at the next line start.
        return self._verbatim_line(i, out)

    def _unfenced(self, i: int, out: list[str], *, final: bool) -> int | None:
        if self._at_line_start(i):
            step = self._line_start(i, out, final=final)
            if step != i:  # undecided, or the line opened a fence and was consumed
                return step
        return self._inline(i, out, final=final)

    def _line_start(self, i: int, out: list[str], *, final: bool) -> int | None:
        """The decisions made only at a line start: a fence opening, a link definition's target.

        Returns past the line when it opens a fence, ``i`` when the character at ``i`` is still to handle.
        """
        raw = self._raw
        opens = self._may_open_fence(i, final=final)
        if opens is None or (opens and not self._decidable(i, 8, final=final)):
            return None
        fence = _FENCE_OPEN.match(raw, i) if opens else None
        if fence:
            self._fence = fence.group(1)
            return self._verbatim_line(i, out)
        if raw[i] == "[":
            if not self._decidable(i, _LOOKAHEAD, final=final):
                return None
            if _LINK_DEFINITION.match(raw, i):
                target_at = raw.index("]:", i) + 2
                if _DANGEROUS_TARGET.match(raw, target_at):
                    self.findings["link"] += 1
                    out.append("\\")
        return i

    def _inline(self, i: int, out: list[str], *, final: bool) -> int | None:
        handler = self._MARKUP_STARTS.get(self._raw[i])
        if handler is None:
            return self._plain_run(i, out)
        return handler(self, i, out, final=final)

    def _plain_run(self, i: int, out: list[str]) -> int:
        """``_literal`` for every character up to the next one that may start markup or a new line, at once:
        each of them would be a literal one at a time, and a line's first character needs its own decision."""
        match = self._PLAIN_RUN.match(self._raw, i)
        end = match.end() if match is not None and match.end() > i else i + 1
        out.append(self._raw[i:end])
        return end

    def _code_span(self, i: int, out: list[str], *, final: bool) -> int | None:
        raw = self._raw
        if self._escaped(i):
            return self._literal(i, out)
        span_end = self._code_span_end(i, final=final)
        if span_end is None:
            return None  # an unclosed code span: hold it back until it closes or cannot be one
        if span_end == i:  # never closes: the backticks are literal text
            while span_end < len(raw) and raw[span_end] == "`":
                span_end += 1
        out.append(raw[i:span_end])
        return span_end

    def _html_tag(self, i: int, out: list[str], *, final: bool) -> int | None:
        if not self._decidable(i, 1, final=final):
            return None
        if self._escaped(i) or not _TAG_START.match(self._raw, i + 1):
            return self._literal(i, out)
        self.findings["html"] += 1
        out.append("\\<")
        return i + 1

    def _image(self, i: int, out: list[str], *, final: bool) -> int | None:
        if not self._decidable(i, 1, final=final):
            return None
        if self._escaped(i) or not self._raw.startswith("[", i + 1):
            return self._literal(i, out)
        self.findings["image"] += 1
        out.append("!\\[")
        return i + 2

    def _link_target(self, i: int, out: list[str], *, final: bool) -> int | None:
        """At a ``]``: when a ``(`` follows, the inline link's target is escaped if its scheme runs scripts."""
        if not self._decidable(i, 1, final=final):
            return None
        if self._escaped(i) or not self._raw.startswith("(", i + 1):
            return self._literal(i, out)
        if not self._decidable(i, 32, final=final):
            return None
        if _DANGEROUS_TARGET.match(self._raw, i + 2):
            self.findings["link"] += 1
            out.append("]\\(")
        else:
            out.append("](")
        return i + 2

    # The characters that may start markup outside code, and the step that decides each.
    _MARKUP_STARTS = {"`": _code_span, "<": _html_tag, "!": _image, "]": _link_target}
    # Characters that are literal whatever follows (no markup start, no line end), then at most one line end.
    _PLAIN_RUN = re.compile("[^" + re.escape("".join(_MARKUP_STARTS)) + r"\n]*\n?")

    def _may_open_fence(self, i: int, *, final: bool) -> bool | None:
        """Whether the line starting at ``i`` may open a code fence; None while its first character is unseen.

        Deciding on the first non-space character keeps ordinary lines from waiting for more text.
        """
        raw = self._raw
        j = i
        while j < len(raw) and j - i < 4 and raw[j] == " ":
            j += 1
        if j == len(raw):
            return False if final else None
        return j - i < 4 and raw[j] in "`~"

    def _closes_fence(self, i: int) -> bool:
        assert self._fence is not None
        char, length = re.escape(self._fence[0]), len(self._fence)
        closing = re.compile(r" {0,3}" + char + "{" + str(length) + r",}[ \t]*(\n|$)")
        return closing.match(self._raw, i) is not None

    def _code_span_end(self, i: int, *, final: bool) -> int | None:
        """End of the inline code span opening at ``i``; ``i`` if the run is literal; None if undecided yet."""
        raw = self._raw
        run_end = i
        while run_end < len(raw) and raw[run_end] == "`":
            run_end += 1
        if run_end == len(raw) and not final:
            return None
        opener = raw[i:run_end]
        search = run_end
        horizon = raw[run_end : run_end + _MAX_CODE_SPAN]
        paragraph = _PARAGRAPH_BREAK.search(horizon)
        stop = run_end + (paragraph.start() if paragraph else len(horizon))
        while True:
            found = raw.find(opener, search, stop)
            if found == -1:
                break
            close_end = found + len(opener)
            while close_end < len(raw) and raw[close_end] == "`":
                close_end += 1
            if close_end - found == len(opener):
                if close_end == len(raw) and not final:
                    return None  # the closing run might still grow
                return close_end
            search = close_end
        if final or paragraph is not None or len(horizon) >= _MAX_CODE_SPAN:
            return i  # never closes: the backticks are literal text
        return None


def neutralise(text: str) -> MarkupReport:
    """Neutralise a whole text at once (same result as streaming it through MarkupNeutraliser)."""
    neutraliser = MarkupNeutraliser()
    safe = neutraliser.feed(text) + neutraliser.finish()
    return MarkupReport(text=safe, findings=dict(neutraliser.findings))
