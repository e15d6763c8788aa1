"""Which language a message is in, and whether the learned rails were measured on it.

The learned rails were trained and measured on English, French, German, Spanish, Italian, Portuguese and
Dutch (rails/eval/README.md). A message confidently identified as another language is routed by the
``unsupported_language`` setting: blocked (the default in production, so an unmeasured language fails
closed) or allowed through the same rails. ``py3langid`` (langid.py's model, BSD) ships its model in the
wheel and takes a fraction of a millisecond; short texts ("ok", "thanks") are never routed, because no
identifier reads them reliably.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

COVERED = ("en", "fr", "de", "es", "it", "pt", "nl")
NAMES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
}
MIN_LETTERS = 20  # fewer letters than this is too little text to identify a language
MIN_CONFIDENCE = 0.95


@dataclass(frozen=True)
class LanguageGuess:
    code: str
    confidence: float

    @property
    def covered(self) -> bool:
        return self.code in COVERED


class LanguageIdentifier:
    _lock = threading.Lock()
    _model: Any = None

    def __init__(self) -> None:
        from webapp.guard.encoder import ClassifierLoadError

        with self._lock:
            if LanguageIdentifier._model is None:
                try:
                    from py3langid import langid

                    # The package's own model file (a pickle it ships and loads itself; nothing from outside).
                    LanguageIdentifier._model = langid.LanguageIdentifier.from_pickled_model(
                        langid.MODEL_FILE, norm_probs=True
                    )
                except Exception as exc:
                    raise ClassifierLoadError(
                        f"the language rail needs py3langid and its bundled model: {type(exc).__name__}: {exc}"
                    ) from exc

    def guess(self, text: str) -> LanguageGuess | None:
        """The language of ``text``, or None when it is too short or too mixed to tell."""
        if sum(c.isalpha() for c in text) < MIN_LETTERS:
            return None
        code, confidence = LanguageIdentifier._model.classify(text)
        if float(confidence) < MIN_CONFIDENCE:
            return None
        return LanguageGuess(code=str(code), confidence=float(confidence))
