"""How long `guardchat eval replay` takes over 10,000 stored turns (issue: shadow replay), never calling a model.

Seeds a fresh SQLite database with ``--turns`` exchanges (10 per conversation), made of the dev split's requests
and replies (rails/eval/split), recorded as allowed; then runs the replay exactly as the CLI does and prints
the wall time, turns per second and how many decisions differ.

    python -m bench.replay                  # 10,000 turns
    python -m bench.replay --turns 500      # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.workload import ROOT

TURNS_PER_CONVERSATION = 10


def _texts() -> tuple[list[str], list[str]]:
    split = ROOT / "rails" / "eval" / "split"
    requests = [json.loads(line)["text"] for line in (split / "requests-dev.jsonl").read_text("utf-8").splitlines()]
    replies = [json.loads(line)["reply"] for line in (split / "replies-dev.jsonl").read_text("utf-8").splitlines()]
    return requests, replies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10_000)
    args = parser.parse_args(argv)
    os.environ.setdefault("NEMO_GUARDRAILS_NO_USAGE_STATS", "1")
    with tempfile.TemporaryDirectory() as data_dir:
        url = f"sqlite:///{Path(data_dir) / 'replay.db'}"
        os.environ["GUARDCHAT_DATABASE_URL"] = url
        os.environ["GUARDCHAT_DATA_DIR"] = data_dir
        os.environ.setdefault("GUARDCHAT_LLM_BACKEND", "triton")

        from webapp.guard.turn import TurnGuard
        from webapp.moderation.replay import replay, replay_settings, stored_turns
        from webapp.settings import Settings
        from webapp.store import conversations as conv
        from webapp.store import users
        from webapp.store.engine import Database
        from webapp.store.migrate import upgrade

        upgrade(url)
        db = Database(url)
        requests, replies = _texts()
        pairs = zip(itertools.cycle(requests), itertools.cycle(replies), strict=False)
        seeded = time.perf_counter()
        with db.write() as s:
            user = users.create_user(s, username="bench", password="password123")
            for c in range(0, args.turns, TURNS_PER_CONVERSATION):
                messages = []
                for request, reply in itertools.islice(pairs, min(TURNS_PER_CONVERSATION, args.turns - c)):
                    messages.append(conv.NewMessage(role="user", content=request))
                    messages.append(conv.NewMessage(role="assistant", content=reply))
                conv.start_conversation(
                    s, user=user, title=f"bench {c}", system_prompt="", sampling={}, messages=messages
                )
        seeded = time.perf_counter() - seeded
        settings = Settings()
        with db.read() as s:
            turns = stored_turns(s, since=None, limit=args.turns, window_turns=settings.input_window_turns)
        guard = TurnGuard.load(replay_settings(settings))
        report = asyncio.run(replay(guard, turns))
        db.dispose()
    print(f"seeded {args.turns} turns in {seeded:.1f} s")
    print(
        f"replayed {report.turns} turns in {report.seconds:.1f} s ({report.turns / report.seconds:.0f} turns/s, "
        f"{1000 * report.seconds / report.turns:.1f} ms a turn); {report.turns - report.unchanged} decided "
        "differently from the recorded 'allowed'"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
