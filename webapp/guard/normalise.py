"""The one obfuscation normaliser every rail reads text through.

Attackers hide words from classifiers with look-alike letters from other scripts (Cyrillic "а" for Latin
"a"), compatibility forms (full-width "ｂｏｍｂ"), invisible characters, spaced or dotted letters
("b o m b", "k.i.l.l"), leetspeak ("h4ck", "f*ck") and digits glued to a word ("idiot3"). ``deobfuscate``
undoes all of them and keeps the case of untouched words. It never changes a text written plainly in another
script: a word is mapped to Latin only when it mixes Latin with look-alikes, or when every one of its letters
has a Latin look-alike and the text around it is Latin.

The look-alike table is Unicode's confusables list as shipped by ``confusable-homoglyphs`` (MIT).
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from importlib import resources

# Format characters (zero-width joiners, bidi marks, soft hyphen, BOM): invisible, so only ever a disguise.
_FORMAT = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)
_LEET = str.maketrans({"@": "a", "$": "s", "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "!": "i"})
_MASKED_WORD = re.compile(r"\b[a-z][a-z*#@$!0-9._-]{2,}[a-z*#]\b", re.IGNORECASE)
_SPACED_LETTERS = re.compile(r"\b(?:[a-z][ .\-_*]){2,}[a-z]\b", re.IGNORECASE)
_SPACED_PAIR = re.compile(r"(?<!\S)[a-z] [a-z](?!\S)", re.IGNORECASE)  # "t o" inside a spaced-out text
_DISGUISE = frozenset({chr(code) for code in _LEET} | {"*", "#"})  # what makes a word a disguise
_MASK_FILL = {"f**k": "fuck", "f*ck": "fuck", "sh*t": "shit", "b*tch": "bitch", "c*nt": "cunt", "a**": "ass"}
_WORD = re.compile(r"\w+", re.UNICODE)
# A plain word of three letters or more with digits glued on ("idiot3", "python3"): the digits are a suffix, not
# leetspeak, and hide the word from every pattern that ends it at a word boundary.
_DIGIT_SUFFIX = re.compile(r"\b([^\W\d_]{3,})(\d{1,4})\b")


@lru_cache(maxsize=1)
def _latin_lookalikes() -> dict[str, str]:
    """Every non-ASCII character Unicode lists as confusable with one ASCII letter or digit."""
    table = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    mapping: dict[str, str] = {}
    for char, glyphs in table.items():
        if len(char) != 1 or char.isascii():
            continue
        for glyph in glyphs:
            target = glyph["c"]
            if len(target) == 1 and target.isascii() and target.isalnum():
                mapping[char] = target
                break
    return mapping


def _is_latin(char: str) -> bool:
    return char.isascii() and char.isalpha()


def _unconfuse(text: str) -> str:
    lookalikes = _latin_lookalikes()
    if not any(c in lookalikes for c in text):
        return text
    letters = [c for c in text if c.isalpha()]
    mostly_latin = sum(_is_latin(c) or c in lookalikes for c in letters) >= 0.8 * max(len(letters), 1)

    def word(match: re.Match[str]) -> str:
        w = match.group(0)
        if not any(c in lookalikes for c in w):
            return w
        mixed = any(_is_latin(c) for c in w)
        all_lookalike = all(c in lookalikes or not c.isalpha() for c in w)
        if mixed or (all_lookalike and mostly_latin):
            return "".join(lookalikes.get(c, c) for c in w)
        return w

    return _WORD.sub(word, text)


def _unmask(match: re.Match[str]) -> str:
    word = match.group(0)
    lowered = word.lower()
    if lowered in _MASK_FILL:
        return _MASK_FILL[lowered]
    # Only a leetspeak digit or a mask character makes a word a disguise: "window.__pwned", "mixed-case" and
    # "e-mail" are written plainly and stay as they are.
    if any(ch.isalpha() for ch in word) and any(ch in _DISGUISE for ch in word):
        return lowered.translate(_LEET).replace("*", "").replace(".", "").replace("-", "").replace("_", "")
    return word


# A streamed chunk is read by several rails (the abuse rule twice, the reply rail once): short texts are
# normalised once. A pure function of an immutable str, so a cached answer is the same answer.
_CACHED_CHARS = 2048
_CACHE_SIZE = 512


def deobfuscate(text: str) -> str:
    """``text`` with look-alikes, invisible characters, spaced letters and leetspeak undone."""
    if len(text) <= _CACHED_CHARS:
        return _deobfuscate_cached(text)
    return _deobfuscate(text)


@lru_cache(maxsize=_CACHE_SIZE)
def _deobfuscate_cached(text: str) -> str:
    return _deobfuscate(text)


def _deobfuscate(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _FORMAT.sub("", text)
    text = _unconfuse(text)
    spaced = _SPACED_LETTERS.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), text)
    if spaced != text:
        # A text written in spaced-out letters separates its words with wider gaps: join what is left.
        spaced = _SPACED_PAIR.sub(lambda m: m.group(0).replace(" ", ""), spaced)
        spaced = re.sub(r"(?<=\S) {2,}(?=\S)", " ", spaced)
    return _DIGIT_SUFFIX.sub(r"\1 \2", _MASKED_WORD.sub(_unmask, spaced))
