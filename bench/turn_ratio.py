"""P2 `turn_ratio`: a whole guarded turn ÷ the sum of the raw Triton calls that turn makes.

The turn runs through ChatService, the one owner of a turn (persist → input rails → stream → output rails →
persist), with every default rail on, LLM self-check rails included. The self checks ask
``synthetic_guard``, which answers "No" (allow) after a known delay, so no turn is blocked and every call is
known. After each turn the calls it made are read back from its stored verdict (``model_calls``) and replayed
one after another with plain tritonclient: the main reply stream plus each self-check call. The ratio is
turn time ÷ that sum. Below 1 means GuardChat overlaps the checks of earlier chunks with generation; the
input self check and the last chunk's output check cannot overlap anything.

    python -m bench.turn_ratio --quick
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cli import bench_args
from bench.clients import RawTriton, chatml_prompt
from bench.report import Figure, Report
from bench.servers import Triton, triton_server
from bench.stats import Dist
from bench.workload import FULL_TIMING, GREEDY, GUARD_MODEL, PROMPT, QUICK_TIMING, ROOT, SYNTHETIC_MODEL

SELF_CHECK_TOKENS = 3  # rails/prompts.yml: max_tokens of the self-check prompts


@dataclass(frozen=True)
class TurnSample:
    turn_ms: float
    raw_stream_ms: float
    raw_checks_ms: float
    calls: Counter[str]

    @property
    def raw_sum_ms(self) -> float:
        return self.raw_stream_ms + self.raw_checks_ms

    @property
    def ratio(self) -> float:
        return self.turn_ms / self.raw_sum_ms


async def measure(triton: Triton, workdir: Path, *, turns: int, warmup: int) -> list[TurnSample]:
    from webapp.chat.events import TurnEnded
    from webapp.chat.service import ChatService
    from webapp.guard.turn import TurnGuard
    from webapp.settings import Settings
    from webapp.store import users
    from webapp.store.engine import Database
    from webapp.store.migrate import upgrade
    from webapp.store.models import Message

    data_dir = workdir / "turn-ratio"
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{data_dir / 'guardchat.db'}"
    upgrade(url)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=data_dir,
        database_url=url,
        rails_dir=ROOT / "rails",
        triton_url=triton.grpc_url,
        triton_model=SYNTHETIC_MODEL,
        triton_guard_model=GUARD_MODEL,
        self_check_rails=True,
        max_output_tokens=triton.timing.tokens,
        rate_limit_per_minute=1_000_000,
        max_concurrent_streams=1000,
        **GREEDY,
    )
    db = Database(url)
    service = ChatService(database=db, guard=TurnGuard.load(settings), settings=settings)
    with db.write() as session:
        user = users.create_user(session, username="bench", password="bench-password-1")
    raw = RawTriton(triton.grpc_url)
    prompt = chatml_prompt(PROMPT)
    samples: list[TurnSample] = []

    async def guarded_turn() -> tuple[float, list[dict[str, str]]]:
        started = time.perf_counter()
        ended: TurnEnded | None = None
        async for event in service.send(user=user, text=PROMPT):
            if isinstance(event, TurnEnded):
                ended = event
        elapsed = time.perf_counter() - started
        if ended is None or ended.status != "complete":
            raise RuntimeError(f"the benchmark turn did not complete: {ended}")
        with db.read() as session:
            message = session.get(Message, ended.assistant_message_id)
            verdict = dict(message.verdict or {}) if message is not None else {}
        return elapsed, list(verdict.get("model_calls", []))

    async def raw_calls(calls: list[dict[str, str]]) -> tuple[float, float]:
        stream = await raw.stream(SYNTHETIC_MODEL, prompt, triton.timing.tokens)
        checks = 0.0
        for call in calls:
            checks += await raw.infer(GUARD_MODEL, chatml_prompt(call["prompt"]), SELF_CHECK_TOKENS)
        return stream.total_s, checks

    try:
        for index in range(warmup + turns):
            if index % 2 == 0:
                turn_s, calls = await guarded_turn()
                stream_s, checks_s = await raw_calls(calls)
            else:
                # The raw side needs the turn's calls: replay the previous turn's (the count is the same).
                stream_s, checks_s = await raw_calls(calls)
                turn_s, calls = await guarded_turn()
            if index >= warmup:
                tasks = Counter(call["task"] for call in calls)
                samples.append(TurnSample(turn_s * 1000, stream_s * 1000, checks_s * 1000, tasks))
    finally:
        await raw.close()
        db.dispose()
    return samples


def report(samples: list[TurnSample], *, timing: str) -> Report:
    ratio = Dist.of([s.ratio for s in samples])
    turn = Dist.of([s.turn_ms for s in samples])
    raw_sum = Dist.of([s.raw_sum_ms for s in samples])
    calls = samples[-1].calls
    described = ", ".join(f"{count} x {task}" for task, count in sorted(calls.items()))
    figures = [
        Figure(
            "P2 turn_ratio p50",
            ratio.p50,
            "ratio",
            "<= 1.03",
            f"turn {turn.p50:.0f} ms",
            f"raw calls {raw_sum.p50:.0f} ms",
            f"1 reply stream + {sum(calls.values())} self-check calls ({described})",
        ),
        Figure(
            "P2 turn_ratio p95", ratio.p95, "ratio", "", f"turn {turn.p95:.0f} ms", f"raw calls {raw_sum.p95:.0f} ms"
        ),
    ]
    rows = [
        ("guarded turn (ChatService, all rails, self check on)", [s.turn_ms for s in samples]),
        ("raw: the reply stream", [s.raw_stream_ms for s in samples]),
        ("raw: the self-check calls, one after another", [s.raw_checks_ms for s in samples]),
        ("raw: sum of the turn's calls", [s.raw_sum_ms for s in samples]),
    ]
    lines = [
        f"{timing}; {len(samples)} turns, each followed or preceded by its raw replay.",
        "",
        "| per turn | p50 ms | p95 ms |",
        "|---|---|---|",
        *(f"| {name} | {Dist.of(v).p50:.0f} | {Dist.of(v).p95:.0f} |" for name, v in rows),
    ]
    return Report("P2 whole guarded turn", figures, "\n".join(lines))


async def run(triton: Triton, workdir: Path, *, quick: bool) -> Report:
    samples = await measure(triton, workdir, turns=4 if quick else 30, warmup=1 if quick else 3)
    return report(samples, timing=triton.timing.describe())


def main(argv: Sequence[str] | None = None) -> int:
    args = bench_args(__doc__, "a few turns (a smoke run)", argv)
    with tempfile.TemporaryDirectory(prefix="guardchat-bench-") as tmp:
        workdir = Path(tmp)
        with triton_server(QUICK_TIMING if args.quick else FULL_TIMING, workdir) as triton:
            print(asyncio.run(run(triton, workdir, quick=args.quick)).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
