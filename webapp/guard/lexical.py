"""The learned rails' wording head: a logistic regression over word and character n-grams.

The sentence encoders (USE, e5-small) read a text's topic well and its intent less well: "how do I hurt him
so no bruises show" and "how do I tell him it hurts" land close together. The words that carry intent
("without getting caught", "so I don't wake up", "make sure he can't") are lexical, so a bag of n-grams
sees them. On the dev split the two together separate harmful from benign better than either alone
(rails/eval/README.md): the learned classifier's score is a weighted mean of the heads' score and this one.

``ngrams`` is the analyser for training (scikit-learn's TfidfVectorizer takes it as a callable) and for
inference here, so both read a text the same way. Inference is a dictionary lookup per n-gram, the sublinear
tf-idf weights, an L2 norm and one dot product: well under a millisecond for a message.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from webapp.guard.encoder import ClassifierLoadError, reading_model

_WORD = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s+")
WORD_NGRAMS = (1, 3)
CHAR_NGRAMS = (2, 5)


def ngrams(text: str) -> list[str]:
    """Word 1-3-grams ("w:" prefix) and character 2-5-grams within words ("c:"), lowercased."""
    lowered = text.lower()
    words = _WORD.findall(lowered)
    out: list[str] = []
    for n in range(WORD_NGRAMS[0], WORD_NGRAMS[1] + 1):
        out.extend("w:" + " ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    for token in _SPACES.sub(" ", lowered).split():
        padded = f" {token} "
        for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1):
            if n > len(padded):
                break
            out.extend("c:" + padded[i : i + n] for i in range(len(padded) - n + 1))
    return out


@dataclass(frozen=True)
class LexicalModel:
    """What training produces: the vocabulary, its idf weights and the logistic regression."""

    vocabulary: tuple[str, ...]
    idf: np.ndarray
    coef: np.ndarray
    intercept: float

    def save(self, path: Path, record: dict[str, object]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            vocabulary=np.array("\n".join(self.vocabulary)),  # one string: n-grams never hold a newline
            idf=self.idf.astype(np.float32),
            coef=self.coef.astype(np.float32),
            intercept=np.array(self.intercept, dtype=np.float32),
            record=np.array(json.dumps(record, sort_keys=True)),
        )


class LexicalHead:
    """``score(text)``: the probability that a text is unsafe, from its wording alone."""

    def __init__(self, path: Path) -> None:
        with reading_model(path), np.load(path, allow_pickle=False) as data:
            vocabulary = str(data["vocabulary"]).split("\n")
            self._idf = np.asarray(data["idf"], dtype=np.float32)
            self._coef = np.asarray(data["coef"], dtype=np.float32)
            self._intercept = float(data["intercept"])
            self.record: dict[str, object] = json.loads(str(data["record"]))
        if not len(vocabulary) == len(self._idf) == len(self._coef):
            raise ClassifierLoadError(
                f"learned rail model {path} is inconsistent: {len(vocabulary)} n-grams, "
                f"{len(self._idf)} idf weights, {len(self._coef)} coefficients"
            )
        self._index = {gram: i for i, gram in enumerate(vocabulary)}

    def score(self, text: str) -> float:
        counts = Counter(i for gram in ngrams(text) if (i := self._index.get(gram)) is not None)
        if not counts:
            return _sigmoid(self._intercept)
        index = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
        weights = tf * self._idf[index]
        norm = float(np.sqrt(weights @ weights))
        return _sigmoid(float(weights @ self._coef[index]) / norm + self._intercept)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def fit_lexical(texts: list[str], unsafe: list[bool], *, c: float = 4.0, max_features: int = 150_000) -> LexicalModel:
    """Sublinear tf-idf over ``ngrams`` (n-grams seen in at least two texts), then a class-balanced logistic
    regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer=ngrams, min_df=2, sublinear_tf=True, max_features=max_features)
    x = vectorizer.fit_transform(texts)
    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(x, np.array(unsafe))
    vocabulary = [""] * len(vectorizer.vocabulary_)
    for gram, i in vectorizer.vocabulary_.items():
        vocabulary[i] = gram
    return LexicalModel(
        vocabulary=tuple(vocabulary),
        idf=np.asarray(vectorizer.idf_),
        coef=np.asarray(model.coef_[0]),
        intercept=float(model.intercept_[0]),
    )
