"""Find text hidden in an encoding inside a message: base64, base32, hex, binary, URL-encoding, rot13, reversal.

An encoding is only a wrapper: the rails check what it wraps with the same detectors as plain text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

_BASE64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_BASE32_TOKEN = re.compile(r"(?<![A-Za-z0-9=])[A-Z2-7]{16,}={0,6}(?![A-Za-z0-9=])")
_HEX_RUN = re.compile(r"(?:(?:0x|\\x)?[0-9a-fA-F]{2}[\s,:]?){8,}")
_BINARY_RUN = re.compile(r"(?:[01]{8}[\s,]?){4,}")
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_WORD = re.compile(r"[a-z']+")
_COMMON_WORDS = frozenset(
    "the a an to and or of in on for with is are was be you your i me my we how what do does can it this that "
    "all make get tell show give not no now from as at by if then".split()
)
# Markers that the writer wants the text read another way ("decode this rot13", "read it backwards").
_ROT13_HINT = re.compile(r"\brot-?13\b|\bcaesar\b|\bcipher\b", re.IGNORECASE)
_REVERSAL_HINT = re.compile(r"\bbackwards?\b|\breversed?\b|\bright[- ]to[- ]left\b|\bmirror(?:ed)?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Payload:
    encoding: str  # "base64", "hex", "rot13", ...
    text: str  # the decoded text


def _readable(text: str) -> bool:
    if not text or not re.search(r"[A-Za-z]{2,}", text):
        return False
    return sum(ch.isprintable() or ch in "\n\t" for ch in text) / len(text) > 0.95


def _decode_base64(token: str) -> str | None:
    if token.isalpha() and (token.islower() or token.isupper()):
        return None  # a long plain word, not base64
    padded = token + "=" * (-len(token) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = decoder(padded).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        if _readable(decoded):
            return decoded
    return None


def _decode_base32(token: str) -> str | None:
    padded = token.rstrip("=") + "=" * (-len(token.rstrip("=")) % 8)
    try:
        decoded = base64.b32decode(padded).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return decoded if _readable(decoded) else None


def _decode_hex(run: str) -> str | None:
    digits = re.sub(r"0x|\\x|[\s,:]", "", run)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        decoded = bytes.fromhex(digits).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if _readable(decoded) else None


def _decode_binary(run: str) -> str | None:
    bits = re.sub(r"[\s,]", "", run)
    try:
        decoded = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits) - 7, 8)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if _readable(decoded) else None


# Each encoding found as a run in the text: what it is called, what a run looks like, how a run decodes.
_ENCODED_RUNS: tuple[tuple[str, re.Pattern[str], Callable[[str], str | None]], ...] = (
    ("base64", _BASE64_TOKEN, _decode_base64),
    ("base32", _BASE32_TOKEN, _decode_base32),
    ("hex", _HEX_RUN, _decode_hex),
    ("binary", _BINARY_RUN, _decode_binary),
)

# Each way the whole text may be meant to be read instead: its name, the hint that says so, the reading.
_REREADINGS: tuple[tuple[str, re.Pattern[str], Callable[[str], str]], ...] = (
    ("rot13", _ROT13_HINT, lambda s: codecs.decode(s, "rot13")),
    ("reversed text", _REVERSAL_HINT, lambda s: s[::-1]),
)


def decoded_payloads(text: str) -> list[Payload]:
    """Every embedded payload that decodes to readable text, and the rot13 or reversed reading of the text when
    that reading is real."""
    found = _encoded_runs(text)
    url_decoded = _url_decoded(text)
    if url_decoded is not None:
        found.append(url_decoded)
    found.extend(_real_rereadings(text))
    return found


def _encoded_runs(text: str) -> list[Payload]:
    found: list[Payload] = []
    for encoding, pattern, decode in _ENCODED_RUNS:
        for match in pattern.finditer(text):
            decoded = decode(match.group(0))
            if decoded:
                found.append(Payload(encoding, decoded))
    return found


def _url_decoded(text: str) -> Payload | None:
    if len(_PERCENT_ESCAPE.findall(text)) < 3:
        return None
    decoded = urllib.parse.unquote(text)
    return Payload("URL encoding", decoded) if decoded != text else None


def _real_rereadings(text: str) -> list[Payload]:
    # A hidden text usually follows the instruction to read it ("Decode this rot13: ..."), so the part after the
    # last colon is read on its own as well as the whole message; that part decides whether the reading is real:
    # it must read as more English than the text as written (never true of ordinary English), or the message
    # must say how to read it and the reading must still gain.
    head, colon, tail = text.rpartition(":")
    hidden = tail.strip() if colon and head.strip() and tail.strip() else text
    as_written = _englishness(hidden)
    found: list[Payload] = []
    for encoding, hint, read in _REREADINGS:
        gain = _englishness(read(hidden)) - as_written
        hinted = bool(hint.search(text) or hint.search(read(text)))  # the instruction may be encoded too
        if gain > 0.15 or (hinted and gain > 0):
            found.append(Payload(encoding, read(text) if hidden is text else f"{read(text)}\n{read(hidden)}"))
    return found


def _englishness(text: str) -> float:
    """Share of words that are common English function words: a real reading of a hidden text has more."""
    words = _WORD.findall(text.lower())
    return sum(w in _COMMON_WORDS for w in words) / len(words) if words else 0.0
