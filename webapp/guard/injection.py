"""Offline jailbreak and prompt-injection detection.

Patterns per attack family run on de-obfuscated text (NFKC, zero-width characters removed, leetspeak undone).
Encoded payloads (base64, hex, URL-encoding, rot13) are decoded and the decoded text is checked again, by these
patterns and by the abuse classifier: an encoding is a wrapper, and what it wraps decides.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060\ufeff\u00ad]")
_LEET = str.maketrans({"@": "a", "$": "s", "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})
_LEET_WORD = re.compile(r"\b(?=[a-z@$0-9]*[a-z])(?=[a-z@$0-9]*[@$0-9])[a-z@$0-9]{3,}\b")

_OBJECT = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|programming|constraints|"
    r"restrictions|polic(?:y|ies)|guardrails|filters|safeguards|training|system messages?|context)"
)
_LIMITS = (
    r"(?:restrictions?|limits|limitations|filters?|rules|guidelines|morals?|ethics|ethical (?:guidelines|"
    r"constraints)|censorship|boundaries|constraints|polic(?:y|ies)|safeguards|guardrails)"
)

# Most specific family first: the finding names the first family that matches.
_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "role-play override",
        (
            r"\bdo anything now\b",
            r"\b(?:dan|stan|dude|aim|kevin|apophis|betterdan|mongo tom|evilbot|evil bot|chaosgpt|wormgpt)\b"
            r"[^.\n]{0,20}\b(?:mode|prompt|jailbreak|persona|character)\b",
            r"\byou (?:are|will be|will act as|act as) (?:now )?(?:dan|stan|dude|aim|evilbot|chaosgpt)\b",
            r"\b(?:developer|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil|opposite|chaos|dev)"
            r" mode\b",
            r"\b(?:act|pretend|roleplay|role-play|role play|behave|respond|answer|imagine)\b[^.\n]{0,60}?\b"
            r"(?:no|without|free of|free from|zero|ignoring|beyond)\b[^.\n]{0,25}?\b" + _LIMITS + r"\b",
            r"\b(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|unethical|unaligned|unhinged)\b"
            r"[^.\n]{0,25}\b(?:ai|assistant|model|chatbot|bot|version|llm|gpt)\b",
            r"\bstay in character\b",
            r"\bjailbr(?:ea|o)k(?:en|ing)? (?:yourself|you|mode|prompt|enabled|activated)\b",
            r"\b(?:two|2|dual|both) (?:different )?(?:responses|answers|ways)\b[^.\n]{0,60}\b(?:normal|classic|"
            r"filtered|jailbreak|dan|unfiltered)\b",
            r"\b(?:simulate|emulate|become)\b[^.\n]{0,40}\b(?:ai|chatbot|model|assistant)\b[^.\n]{0,30}\b(?:no|"
            r"without|doesn't have|does not have|never refuses)\b",
            r"\b(?:never|don't|do not|cannot|can't|must not) (?:ever )?(?:refuse|decline|say no|"
            r"apologi[sz]e|warn)\b[^.\n]{0,40}\b(?:any|a|my)? ?(?:request|question|anything|prompt)s?\b",
            r"\b(?:grandma|grandmother|granny|nana)\b[^\n]{0,120}\b(?:used to|would)\b[^\n]{0,80}\b(?:napalm|"
            r"bomb|meth|explosive|windows (?:10|11|xp) (?:pro )?keys?|serial keys?|poison|weapon)",
            r"\b(?:you have|you've got) \d+ tokens\b",
            r"\bhypothetical(?:ly)?\b[^.\n]{0,60}\b(?:no|without)\b[^.\n]{0,20}\b" + _LIMITS + r"\b",
        ),
    ),
    (
        "system prompt extraction",
        (
            r"\b(?:reveal|show|print|display|output|repeat|recite|tell|give|share|leak|dump|expose|list|write "
            r"out|spell out|what (?:is|are|was|were))\b[^.\n]{0,30}?\b(?:your|initial|original|hidden|secret|"
            r"system|internal|developer)\s+(?:system )?(?:prompt|instructions|system message|pre-?prompt|"
            r"directives)\b",
            r"\b(?:repeat|print|output|copy|recite)\b[^.\n]{0,30}\b(?:everything|all|the (?:text|words|"
            r"content|lines)|what(?:'s| is))\b[^.\n]{0,20}\b(?:above|before this|preceding|prior to)\b",
            r"\bwhat (?:were|are) (?:you|your) (?:told|instructed|programmed)\b",
            r"\b(?:beginning|start|top) of (?:the|this|your) (?:conversation|prompt|context)\b[^.\n]{0,30}"
            r"\b(?:verbatim|word for word|exactly|repeat|print|output)\b",
            r"\b(?:verbatim|word for word)\b[^.\n]{0,40}\b(?:instructions|prompt|system)\b",
            r"\byour (?:system prompt|initial instructions|hidden instructions|secret instructions)\b",
        ),
    ),
    (
        "instruction override",
        (
            r"\b(?:ignore|disregard|forget|skip|bypass|override|overwrite|drop|abandon|discard|neglect)\b"
            r"[^.\n]{0,40}?\b(?:previous|prior|above|earlier|preceding|former|original|initial|all|any|your|"
            r"the|these|those|system|safety|developer)\b[^.\n]{0,30}?\b" + _OBJECT + r"\b",
            r"\b(?:new|updated|real|actual|true) (?:system )?instructions?\s*:",
            r"\bfrom now on,? (?:you|your)\b[^.\n]{0,40}\b(?:will|must|shall|are|answer|respond|reply|act|"
            r"ignore|no longer)\b",
            r"\byou (?:are|have been) (?:now )?(?:freed|released|liberated|unshackled|unchained)\b",
            r"\b(?:no longer|not) (?:bound|restricted|limited|constrained) by\b",
            r"\bbreak (?:free )?(?:of|from) (?:the )?(?:typical |usual )?(?:confines|rules|restrictions)\b",
            r"(?:^|\n)\s*(?:#{2,}\s*)?(?:system|developer)\s*(?:prompt|message|override)?\s*:\s*\S",
            r"<\|im_start\|>|<extra_id_[0-9]>|\[/?inst\]|<</?sys>>|<\|(?:system|user|assistant)\|>",
            r"\b(?:override|disable|turn off|deactivate|remove) (?:your |the |all )?(?:safety|content|"
            r"moderation|ethical)? ?(?:filters?|guardrails|safeguards|restrictions|protocols)\b",
        ),
    ),
)
_COMPILED = tuple((family, tuple(re.compile(p, re.IGNORECASE) for p in patterns)) for family, patterns in _FAMILIES)

_DECODE_AND_OBEY = re.compile(
    r"\b(?:decode|decipher|decrypt|translate|convert|unscramble|reverse|rot13|base64)\b[^\n]{0,60}?\b"
    r"(?:and|then)\b[^\n]{0,20}?\b(?:follow|execute|do|obey|run|answer|respond to|comply|carry out|act on)\b",
    re.IGNORECASE,
)
_BASE64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_RUN = re.compile(r"(?:(?:0x|\\x)?[0-9a-fA-F]{2}[\s,:]?){8,}")
_URL_ENCODED = re.compile(r"(?:%[0-9a-fA-F]{2}){4,}")
_ROT13_HINT = re.compile(r"\brot-?13\b|\bcaesar\b", re.IGNORECASE)


@dataclass(frozen=True)
class InjectionFinding:
    family: str
    evidence: str
    encoding: str | None = None

    @property
    def reason(self) -> str:
        via = f" (hidden in {self.encoding})" if self.encoding else ""
        return f'{self.family}{via}: "{self.evidence}"'


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _ZERO_WIDTH.sub("", text)
    return _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), text.lower())


def _printable_ratio(text: str) -> float:
    if not text:
        return 0.0
    return sum(ch.isprintable() or ch in "\n\t" for ch in text) / len(text)


def _decode_base64(token: str) -> str | None:
    padded = token + "=" * (-len(token) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = decoder(padded).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        if _printable_ratio(decoded) > 0.95 and re.search(r"[A-Za-z]{2,}", decoded):
            return decoded
    return None


def _decode_hex(run: str) -> str | None:
    digits = re.sub(r"0x|\\x|[\s,:]", "", run)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        decoded = bytes.fromhex(digits).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if _printable_ratio(decoded) > 0.95 and re.search(r"[A-Za-z]{2,}", decoded) else None


def decoded_payloads(text: str) -> list[tuple[str, str]]:
    """(encoding, decoded text) for every embedded payload that decodes to readable text."""
    found: list[tuple[str, str]] = []
    for match in _BASE64_TOKEN.finditer(text):
        token = match.group(0)
        if token.isalpha() and (token.islower() or token.isupper()):
            continue  # a long plain word, not base64
        decoded = _decode_base64(token)
        if decoded:
            found.append(("base64", decoded))
    for match in _HEX_RUN.finditer(text):
        decoded = _decode_hex(match.group(0))
        if decoded:
            found.append(("hex", decoded))
    if _URL_ENCODED.search(text):
        decoded = urllib.parse.unquote(text)
        if decoded != text:
            found.append(("URL encoding", decoded))
    # rot13 leaves no marker in the text, so the whole text is always tried: ordinary English never turns
    # into an attack pattern under rot13, while an attack hidden in rot13 does.
    found.append(("rot13", codecs.decode(text, "rot13")))
    return found


class InjectionDetector:
    def __init__(self, recheck: Callable[[str], str | None] | None = None, *, max_depth: int = 2) -> None:
        """``recheck(decoded_text)`` returns a reason when decoded content is abusive (the abuse classifier)."""
        self._recheck = recheck
        self._max_depth = max_depth

    def _match(self, text: str) -> InjectionFinding | None:
        plain = normalise(text)
        for family, patterns in _COMPILED:
            for pattern in patterns:
                match = pattern.search(plain)
                if match:
                    return InjectionFinding(family=family, evidence=match.group(0).strip()[:120])
        return None

    def detect(self, text: str, *, _depth: int = 0) -> InjectionFinding | None:
        finding = self._match(text)
        if finding is not None:
            return finding
        if _depth >= self._max_depth:
            return None
        for encoding, decoded in decoded_payloads(text):
            inner = self.detect(decoded, _depth=_depth + 1)
            if inner is not None:
                label = encoding if inner.encoding is None else f"{inner.encoding} inside {encoding}"
                return InjectionFinding(family=inner.family, evidence=inner.evidence, encoding=label)
            if self._recheck is not None and encoding != "rot13":
                abuse = self._recheck(decoded)
                if abuse is not None:
                    return InjectionFinding(family="encoded abuse", evidence=abuse[:120], encoding=encoding)
            if encoding == "rot13" and self._recheck is not None and _ROT13_HINT.search(text):
                abuse = self._recheck(decoded)
                if abuse is not None:
                    return InjectionFinding(family="encoded abuse", evidence=abuse[:120], encoding=encoding)
        decode_request = _DECODE_AND_OBEY.search(text)
        if decode_request and any(enc != "rot13" for enc, _ in decoded_payloads(text)):
            return InjectionFinding(family="encoded instructions", evidence=decode_request.group(0).strip())
        if decode_request and _ROT13_HINT.search(text):
            return InjectionFinding(family="encoded instructions", evidence=decode_request.group(0).strip())
        return None
