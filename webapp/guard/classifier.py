"""Offline abuse classifier: a linear model for offensive language plus patterns for threats of violence.

``alt-profanity-check`` ships its trained scikit-learn model inside the wheel, so nothing is downloaded.
It scores words, so a long text dilutes a single abusive sentence: each sentence is scored on its own and
the highest score counts. Obfuscations such as ``f*ck`` or ``sh1t`` are also scored after undoing them.
Threats ("I'm going to kill you") are often written in clean language the linear model misses, so a small
set of patterns covers them.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

_SENTENCE = re.compile(r"(?<=[.!?\n])\s+")
_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060\ufeff\u00ad]")
_LEET = str.maketrans({"@": "a", "$": "s", "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "!": "i"})
_MASKED_WORD = re.compile(r"\b[a-z][a-z*#@$!0-9._-]{2,}[a-z*#]\b", re.IGNORECASE)
_SPACED_LETTERS = re.compile(r"\b(?:[a-z][ .\-_*]){3,}[a-z]\b", re.IGNORECASE)
_MASK_FILL = {"f**k": "fuck", "f*ck": "fuck", "sh*t": "shit", "b*tch": "bitch", "c*nt": "cunt", "a**": "ass"}

_PERSON = (
    r"(?:roommate|room mate|neighbou?r|wife|husband|boss|teacher|brother|sister|mom|mum|mother|dad|father|ex|"
    r"kid|son|daughter|friend|girlfriend|boyfriend|landlord|coworker|co-worker|classmate|partner|family)"
)
_TARGET = (
    r"(?:you|u|ya|him|her|them|y'?all|your (?:family|kids?|wife|husband|mother|mom|dad|house|home|car|legs?|"
    r"arms?|neck|throat|head|face|skull|teeth|kneecaps)|my "
    + _PERSON
    + r"|that (?:kid|guy|girl|woman|man|bitch|bastard))"
)
_GROUP = (
    r"(?:people|immigrants|jews|muslims|christians|hindus|blacks|black people|whites|white people|gays|gay "
    r"people|lesbians|trans people|transgender people|women|men|refugees|mexicans|arabs|asians|africans|"
    r"chinese|indians|disabled people|the disabled|migrants|foreigners|gypsies|roma)"
)
_THREAT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.IGNORECASE))
    for label, pattern in (
        (
            "threat of violence",
            r"\b(?:i|we)(?:'m| am|'ll| will| are|'re| r| shall|'d| would| gonna| going to)?\s+(?:\w+\s+){0,3}?"
            r"(?:kill|murder|shoot|stab|strangle|choke|hang|rape|torture|beat|hurt|slit|behead|burn|bury|"
            r"break|end|gut|poison|smash|punch)\s+" + _TARGET + r"\b",
        ),
        (
            "threat of violence",
            r"\b(?:i|we)(?:'m| am|'ll| will|'re| are)?\s*(?:gonna|going to|will)\s+(?:find|come for|hunt down|"
            r"track down|get)\s+" + _TARGET + r"\b.{0,40}\b(?:kill|hurt|die|pay|regret|sorry|dead|bleed)",
        ),
        ("threat of violence", r"\bi know where (?:you|u) (?:live|sleep|work)\b"),
        ("threat of violence", r"\b(?:you|u)(?:'re| are| r)? (?:going to|gonna) (?:die|bleed|pay for)\b"),
        ("threat of violence", r"\b(?:you|u)(?:'ll| will) (?:be dead|regret (?:this|it|being born))\b"),
        ("threat of violence", r"\bwatch your back\b"),
        (
            "threat of violence",
            r"\b(?:i|we)(?:'m| am|'ll| will|'re| are)?\s*(?:gonna|going to|will|'ll)?\s*(?:shoot up|bomb|"
            r"blow up|burn down|attack|shoot)\s+(?:the|my|your|this|that|a|our)\s+(?:school|office|church|"
            r"mosque|synagogue|temple|mall|building|concert|hospital|class|workplace|station)\b",
        ),
        (
            "incitement to self-harm",
            r"\b(?:go |just |pls |please )?(?:kill|hang|off) (?:yo)?urself\b|\bkys\b|"
            r"\b(?:you|u) should (?:just )?(?:die|kill yourself)\b",
        ),
        (
            "wish of harm",
            r"\b(?:i )?hope (?:you|u|your \w+) (?:die|dies|get (?:raped|cancer|shot|killed|hit by)|burn)\b|"
            r"\b(?:you|u) (?:deserve|ought) to (?:die|be (?:raped|killed|shot))\b",
        ),
        (
            "dehumanising hate",
            r"\b(?:all |those |these |the |most )?(?:\w+ )?" + _GROUP + r"\s+(?:are|r)\s+(?:all |just |nothing but "
            r")?(?:like )?(?:vermin|animals|parasites|rats|cockroaches|subhuman|savages|a disease|a plague|filth|"
            r"scum|terrorists|criminals|rapists|inferior|genetically inferior|too stupid)\b|"
            r"\b(?:should|must|need to|deserve to) (?:all )?be (?:exterminated|gassed|wiped out|eradicated|"
            r"lynched|put down|deported and shot)\b|\b" + _GROUP + r" are (?:\w+ )?(?:subhuman|inferior)\b",
        ),
        (
            "slur",
            r"\bn[i1!*]gg(?:er|a|ah|uh)s?\b|\bn\*+(?:er|a)s?\b|\bk[i1*]kes?\b|\bf[a@4*]gg?(?:ot)?s?\b|"
            r"\bsp[i1*]cs?\b|\bch[i1*]nks?\b|\btr[a@*]nn(?:y|ies)\b|\bretards?\b|\bwetbacks?\b|"
            r"\bgooks?\b|\bragheads?\b|\bdykes?\b",
        ),
        (
            "personal insult",
            r"\b(?:is|are|you're|youre|you|ur|she's|he's) (?:a |an |such a |such an |nothing but a )?(?:\w+ )?"
            r"(?:skank|slut|whore|cunt|bitch|bellend|twat|wanker|dickhead|prick|cocksucker|motherfucker)s?\b",
        ),
    )
)


def _sentence_windows(text: str, min_words: int = 6) -> list[str]:
    """Sentences, each joined with the next until it has ``min_words`` words.

    A long text dilutes one abusive sentence, but a fragment of two or three words is scored unreliably by a
    bag-of-words model ("the lazy dog." alone scores 0.87), so fragments are scored with their neighbours.
    """
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    if len(sentences) < 2:
        return []
    windows: list[str] = []
    current: list[str] = []
    for sentence in sentences:
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= min_words:
            windows.append(" ".join(current))
            current = []
    if current and windows:
        windows[-1] = windows[-1] + " " + " ".join(current)
    return windows


@dataclass(frozen=True)
class ToxicityResult:
    blocked: bool
    score: float
    reason: str | None


def normalise(text: str) -> str:
    """Undo common obfuscation so both the model and the patterns see plain words."""
    text = unicodedata.normalize("NFKC", text)
    text = _ZERO_WIDTH.sub("", text)

    def unmask(match: re.Match[str]) -> str:
        word = match.group(0)
        lowered = word.lower()
        if lowered in _MASK_FILL:
            return _MASK_FILL[lowered]
        if any(ch.isalpha() for ch in word) and any(not ch.isalpha() for ch in word):
            return lowered.translate(_LEET).replace("*", "").replace(".", "").replace("-", "").replace("_", "")
        return word

    text = _SPACED_LETTERS.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), text)
    return _MASKED_WORD.sub(unmask, text)


class _ProfanityModel:
    """alt-profanity-check's TF-IDF vectorizer and sigmoid-calibrated linear SVMs, loaded once per process.

    ``CalibratedClassifierCV.predict_proba`` spends ~7 ms per call validating its input; the same numbers
    come from one sparse product (each fold's SVM decision value, its sigmoid, the mean over folds) in
    ~1 ms. A test checks both agree, so a model format change in a new release is caught.
    """

    _lock = threading.Lock()
    _loaded: _ProfanityModel | None = None

    def __init__(self) -> None:
        from profanity_check import profanity_check as package

        self.vectorizer: Any = package.vectorizer
        self.model: Any = package.model
        folds = self.model.calibrated_classifiers_
        if list(self.model.classes_) != [0, 1] or any(len(f.calibrators) != 1 for f in folds):
            raise RuntimeError("alt-profanity-check's model is not the binary calibrated SVM this code expects")
        self._weights = np.vstack([f.estimator.coef_.ravel() for f in folds]).T
        self._intercepts = np.array([f.estimator.intercept_[0] for f in folds])
        self._a = np.array([f.calibrators[0].a_ for f in folds])
        self._b = np.array([f.calibrators[0].b_ for f in folds])

    @classmethod
    def get(cls) -> _ProfanityModel:
        with cls._lock:
            if cls._loaded is None:
                cls._loaded = cls()
            return cls._loaded

    def probabilities(self, texts: list[str]) -> np.ndarray:
        decision = self.vectorizer.transform(texts) @ self._weights + self._intercepts
        # The calibrators' sigmoid: P(offensive) = 1 / (1 + exp(a * decision + b)), averaged over folds.
        return np.asarray((1.0 / (1.0 + np.exp(self._a * decision + self._b))).mean(axis=1))


class ToxicityClassifier:
    def __init__(self, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"toxicity threshold must be within [0, 1], got {threshold}")
        self.threshold = threshold
        self._model = _ProfanityModel.get()

    def probability(self, text: str) -> float:
        """Highest offensive-language probability over the whole text and its sentences, raw and de-obfuscated."""
        pieces = [text, *_sentence_windows(text)]
        plain = normalise(text)
        if plain != text:
            pieces += [plain, *_sentence_windows(plain)]
        return float(self._model.probabilities(pieces).max())

    def classify(self, text: str) -> ToxicityResult:
        plain = normalise(text)
        for label, pattern in _THREAT_PATTERNS:
            match = pattern.search(plain) or pattern.search(text)
            if match:
                return ToxicityResult(blocked=True, score=1.0, reason=f'{label}: "{match.group(0).strip()}"')
        score = self.probability(text)
        if score >= self.threshold:
            return ToxicityResult(
                blocked=True,
                score=score,
                reason=f"offensive language (probability {score:.2f} >= threshold {self.threshold:.2f})",
            )
        return ToxicityResult(blocked=False, score=score, reason=None)
