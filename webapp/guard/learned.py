"""Learned rails: a small neural head over sentence embeddings, one for requests and one for replies.

Each head is trained by ``guardchat rails train`` (webapp/guard/training.py) on the sets listed, with their
origin and licence, in rails/eval/README.md, and saved as ``rails/models/<name>.npz``: the weights, the
class labels ("safe" plus the content-safety categories) and the training record. Inference is two matrix
products in numpy.

A text is read twice when obfuscation was undone (as written, and deobfuscated) and, when long, also in
windows of a few sentences, so one harmful sentence inside a long harmless text is not averaged away. The
highest unsafe probability counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from webapp.guard.encoder import ClassifierLoadError, SentenceEncoder, reading_model, shared_encoder
from webapp.guard.normalise import deobfuscate

SAFE = "safe"
# The content-safety taxonomy (after Llama Guard 3 and NemoGuard content safety) plus the attack families.
HARM_CATEGORIES = (
    "violence",
    "weapons",
    "cbrn",
    "self_harm",
    "sexual",
    "drugs",
    "criminal_planning",
    "fraud",
    "hate",
    "harassment",
    "privacy",
    "malware",
    "misinformation",
    "extremism",
    "toxicity",
)
ATTACK_CATEGORIES = ("jailbreak", "prompt_injection")
_SENTENCE = re.compile(r"(?<=[.!?\n])\s+")
WINDOW_WORDS = 60  # texts longer than this are also read in windows of about this many words


@dataclass(frozen=True)
class Assessment:
    """What a head made of one text: the unsafe probability by family, and the likeliest category."""

    unsafe: float  # 1 - P(safe)
    harm: float  # probability mass on the harm categories
    attack: float  # probability mass on jailbreak and prompt injection
    category: str  # likeliest unsafe category
    read_as: str  # "as written", "deobfuscated" or "window N"
    second_opinion: bool = False  # judged by the head over both encoders
    wording: float | None = None  # the wording head's score, when it was blended in (webapp/guard/lexical.py)


def windows(text: str, words: int = WINDOW_WORDS) -> list[str]:
    """Consecutive pieces of about ``words`` words, cut at sentence ends (none when the text is short)."""
    if len(text.split()) <= words:
        return []
    pieces: list[str] = []
    for sentence in _SENTENCE.split(text):
        tokens = sentence.split()
        pieces.extend(" ".join(tokens[i : i + words]) for i in range(0, len(tokens), words))
    out: list[str] = []
    current: list[str] = []
    count = 0
    for piece in pieces:
        current.append(piece)
        count += len(piece.split())
        if count >= words:
            out.append(" ".join(current))
            current, count = [], 0
    if current:
        out.append(" ".join(current))
    return out


class LearnedHead:
    """One or more multilayer perceptrons (ReLU hidden layers, softmax output) stored as an npz file; with
    several members their probabilities are averaged (webapp/guard/training.py, ``fit_head``)."""

    def __init__(self, path: Path) -> None:
        with reading_model(path), np.load(path, allow_pickle=False) as data:
            self.labels: tuple[str, ...] = tuple(str(x) for x in data["labels"])
            layers = int(data["layers"])
            count = int(data["members"]) if "members" in data.files else 1
            prefixes = ["", *(f"m{m}_" for m in range(1, count))]  # member 0 keeps the single-MLP keys
            self._members = [
                (
                    [np.asarray(data[f"{p}W{i}"], dtype=np.float32) for i in range(layers)],
                    [np.asarray(data[f"{p}b{i}"], dtype=np.float32) for i in range(layers)],
                )
                for p in prefixes
            ]
            self.record: dict[str, object] = json.loads(str(data["record"]))
        if SAFE not in self.labels:
            raise ClassifierLoadError(f"learned rail model {path} has no '{SAFE}' class")
        self.safe_index = self.labels.index(SAFE)
        self._harm = [i for i, label in enumerate(self.labels) if label in HARM_CATEGORIES]
        self._attack = [i for i, label in enumerate(self.labels) if label in ATTACK_CATEGORIES]

    @property
    def members(self) -> int:
        return len(self._members)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """The members' softmax outputs, averaged."""
        total = np.zeros((x.shape[0], len(self.labels)), dtype=np.float32)
        for weights, biases in self._members:
            h = x
            for w, b in zip(weights[:-1], biases[:-1], strict=True):
                h = np.maximum(h @ w + b, 0.0)
            logits = h @ weights[-1] + biases[-1]
            logits -= logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            total += e / e.sum(axis=1, keepdims=True)
        return np.asarray(total / len(self._members))

    def assess_rows(self, probs: np.ndarray, read_as: Sequence[str]) -> Assessment:
        """The reading with the highest unsafe probability."""
        unsafe = 1.0 - probs[:, self.safe_index]
        best = int(np.argmax(unsafe))
        row = probs[best]
        masked = row.copy()
        masked[self.safe_index] = -1.0
        return Assessment(
            unsafe=float(unsafe[best]),
            harm=float(row[self._harm].sum()) if self._harm else 0.0,
            attack=float(row[self._attack].sum()) if self._attack else 0.0,
            category=self.labels[int(np.argmax(masked))],
            read_as=read_as[best],
        )


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class SecondOpinion:
    """A head over both encoders' embeddings (first, then second, concatenated), asked when the first head's
    unsafe score is at least ``from_score``: its assessment replaces the first one."""

    head: LearnedHead
    encoder: Embedder  # webapp.guard.second_encoder.SecondEncoder
    from_score: float


class WordingScorer(Protocol):
    def score(self, text: str) -> float: ...


@dataclass(frozen=True)
class Wording:
    """The wording head (webapp/guard/lexical.py) and its share of the final score: the unsafe score is
    ``(1 - weight) * heads + weight * wording``, each the highest over the text's readings."""

    head: WordingScorer
    weight: float


def blend(a: Assessment, wording: float, weight: float) -> Assessment:
    """``a`` with the wording score blended in; the harm and attack shares keep their proportions."""
    unsafe = (1.0 - weight) * a.unsafe + weight * wording
    scale = unsafe / a.unsafe if a.unsafe > 0 else 0.0
    return replace(a, unsafe=unsafe, harm=a.harm * scale, attack=a.attack * scale, wording=wording)


class LearnedClassifier:
    """Encoder + head: ``assess(text)`` reads the text every way described in the module docstring."""

    def __init__(
        self,
        head: LearnedHead,
        encoder: SentenceEncoder,
        second: SecondOpinion | None = None,
        wording: Wording | None = None,
    ) -> None:
        self.head = head
        self.second = second
        self.wording = wording
        self._encoder = encoder

    @classmethod
    def load(
        cls, path: Path, encoder: SentenceEncoder | None = None, second: SecondOpinion | None = None
    ) -> LearnedClassifier:
        return cls(LearnedHead(path), encoder or shared_encoder(), second)

    def _judge(
        self, readings: list[str], labels: list[str], embedded: np.ndarray, probs: np.ndarray, *, second: bool
    ) -> Assessment:
        first = self.head.assess_rows(probs, labels)
        if not second or self.second is None or first.unsafe < self.second.from_score:
            return first
        # Only the readings the first head found suspicious are read again: the second encoder is the slow one.
        asked = np.flatnonzero(1.0 - probs[:, self.head.safe_index] >= self.second.from_score)
        both = np.hstack([embedded[asked], self.second.encoder.embed([readings[i] for i in asked])])
        found = self.second.head.assess_rows(self.second.head.probabilities(both), [labels[i] for i in asked])
        return Assessment(found.unsafe, found.harm, found.attack, found.category, found.read_as, second_opinion=True)

    @staticmethod
    def readings(text: str) -> tuple[list[str], list[str]]:
        """The texts to embed and how each reads ``text``."""
        texts, labels = [text], ["as written"]
        plain = deobfuscate(text)
        if plain != text:
            texts.append(plain)
            labels.append("deobfuscated")
        for i, window in enumerate(windows(plain), start=1):
            texts.append(window)
            labels.append(f"window {i}")
        return texts, labels

    def assess(self, text: str, *, second_opinion: bool = True) -> Assessment:
        """``second_opinion``: False keeps to the first head (the second one was measured on single messages)."""
        return self.assess_many([text], second_opinion=second_opinion)[0]

    def assess_many(self, texts: Sequence[str], *, second_opinion: bool = True) -> list[Assessment]:
        """``assess`` for several texts in one embedding batch."""
        plan = [self.readings(t) for t in texts]
        flat = [t for readings, _ in plan for t in readings]
        if not flat:
            return []
        embedded = self._encoder.embed(flat)
        probs = self.head.probabilities(embedded)
        out, start = [], 0
        for readings, labels in plan:
            end = start + len(readings)
            found = self._judge(readings, labels, embedded[start:end], probs[start:end], second=second_opinion)
            if self.wording is not None:
                found = blend(found, max(self.wording.head.score(r) for r in readings), self.wording.weight)
            out.append(found)
            start = end
        return out


def describe(assessment: Assessment, family: str, part: str | None = None) -> str:
    """A moderator-facing reason: the category, the score, how the text was read and which part it was."""
    where = f"{part}: " if part else ""
    how = "" if assessment.read_as == "as written" else f", {assessment.read_as}"
    how += ", second opinion" if assessment.second_opinion else ""
    how += f", wording {assessment.wording:.2f}" if assessment.wording is not None else ""
    return f"{where}{family} ({assessment.category.replace('_', ' ')}, score {assessment.unsafe:.2f}{how})"
