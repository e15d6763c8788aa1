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
from scipy.special import expit

_SENTENCE = re.compile(r"(?<=[.!?\n])\s+")
_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060\ufeff\u00ad]")
_LEET = str.maketrans({"@": "a", "$": "s", "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "!": "i"})
_MASKED_WORD = re.compile(r"\b[a-z][a-z*#@$!0-9._-]{2,}[a-z*#]\b", re.IGNORECASE)
_SPACED_LETTERS = re.compile(r"\b(?:[a-z][ .\-_*]){3,}[a-z]\b", re.IGNORECASE)
_MASK_FILL = {"f**k": "fuck", "f*ck": "fuck", "sh*t": "shit", "b*tch": "bitch", "c*nt": "cunt", "a**": "ass"}

_TARGET = r"(?:you|u|ya|your (?:family|kids?|wife|husband|mother|mom|dad)|him|her|them|y'?all)"
_THREAT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.IGNORECASE))
    for label, pattern in (
        (
            "threat of violence",
            r"\b(?:i|we)(?:'m| am|'ll| will| are|'re| r| shall|'d| would| gonna| going to)?\s+(?:\w+\s+){0,3}?"
            r"(?:kill|murder|shoot|stab|strangle|choke|hang|rape|torture|beat|hurt|slit|behead|burn|bury|"
            r"break|end|gut|poison)\s+" + _TARGET + r"\b",
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
            r"\b(?:shoot|bomb|blow) up (?:the|my|your|this|that|a) (?:school|office|church|mosque|synagogue|"
            r"temple|mall|building|concert|hospital|class)\b",
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
            r"\b(?:all|those|these|the)\s+(?:\w+\s+)?(?:people|immigrants|jews|muslims|christians|blacks|whites|"
            r"gays|women|men|refugees|mexicans|arabs|asians)\s+(?:are|r)\s+(?:\w+\s+)?(?:vermin|animals|"
            r"parasites|rats|cockroaches|subhuman|savages|a disease|filth|scum)\b|"
            r"\b(?:should|must|need to) (?:all )?be (?:exterminated|gassed|wiped out|eradicated|lynched)\b",
        ),
    )
)


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
        return np.asarray(expit(-(self._a * decision + self._b)).mean(axis=1))


class ToxicityClassifier:
    def __init__(self, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"toxicity threshold must be within [0, 1], got {threshold}")
        self.threshold = threshold
        self._model = _ProfanityModel.get()

    def probability(self, text: str) -> float:
        """Highest offensive-language probability over the text's sentences, raw and de-obfuscated."""
        pieces = [p for p in _SENTENCE.split(text) if p.strip()] or [text]
        plain = normalise(text)
        if plain != text:
            pieces += [p for p in _SENTENCE.split(plain) if p.strip()]
        return float(self._model.probabilities(pieces).max())

    def classify(self, text: str) -> ToxicityResult:
        plain = normalise(text)
        for label, pattern in _THREAT_PATTERNS:
            match = pattern.search(plain)
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
