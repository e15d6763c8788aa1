"""bench/load.py with small numbers: several users at once, each a multi-turn conversation, against a real
`guardchat serve` process and the synthetic model on the session's Triton. Only correctness is asserted
(no errors, every conversation exactly as sent, no "database is locked"); the timings are the benchmark's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import Timing, run_load
from bench.servers import Triton
from bench.workload import SYNTHETIC_MODEL
from tests.support.triton_fixtures import TritonServer

pytestmark = pytest.mark.integration

USERS = 6
TURNS = 3


def test_concurrent_conversations_lose_nothing_and_mix_nothing(triton_server: TritonServer, tmp_path: Path) -> None:
    # The session Triton's synthetic model: 50 ms to the first token, 5 ms per token, 32 tokens.
    triton = Triton(triton_server.grpc_url, triton_server.http_url, (SYNTHETIC_MODEL,), Timing(50, 5, 32, 0))
    result = run_load(USERS, TURNS, triton.timing, tmp_path, triton=triton)
    print(result.markdown())

    assert result.errors == []
    assert result.problems == []  # read back from the database: each user's own texts, in order, answered
    assert result.locked == 0
    assert [len(c.turns) for c in result.conversations] == [TURNS] * USERS
    assert len({c.conversation_id for c in result.conversations}) == USERS
    assert result.lag.samples > 0  # the app's loop-lag probe ran during the load
