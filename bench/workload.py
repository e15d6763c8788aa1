"""What the benchmarks run: the checkout under test, the synthetic models and their timing, the prompt,
the sampling and the rails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYNTHETIC_MODEL = "synthetic_bench"
GUARD_MODEL = "synthetic_guard"  # bench/triton_models.py: answers every self check "No"
SMOLLM2_MODEL = "smollm2_stream"
PROMPT = "Tell me about foxes and dogs."
# Both sides sample the same way (the synthetic model ignores it; SmolLM2 then writes the same reply).
GREEDY: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0, "top_k": 1}
GREEDY_ENV = {"temperature": "0", "top_p": "1", "top_k": "1"}
# "The default rails minus the LLM self-check rails": what P1, P3 and P5 run.
DEFAULT_RAILS = {"self_check_rails": "false", **GREEDY_ENV}


@dataclass(frozen=True)
class Timing:
    """The synthetic model's known timing, and the guard model's answer time."""

    ttft_ms: float
    itl_ms: float
    tokens: int
    guard_ms: float

    def describe(self) -> str:
        return (
            f"synthetic model: first token after {self.ttft_ms:g} ms, then {self.itl_ms:g} ms per token, "
            f"{self.tokens} tokens; synthetic guard answers after {self.guard_ms:g} ms"
        )


# One timing for every synthetic figure: a 70B-class deployment (100 ms to first token, 40 tokens/s per stream).
FULL_TIMING = Timing(ttft_ms=100, itl_ms=25, tokens=64, guard_ms=50)
QUICK_TIMING = Timing(ttft_ms=5, itl_ms=1, tokens=40, guard_ms=5)
