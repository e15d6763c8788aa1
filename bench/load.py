"""Load: N users at once, each holding a multi-turn conversation over GuardChat's streaming API.

Real processes: `guardchat serve` (uvicorn, rails, SQLite) and a Triton with the `synthetic_bench` model at a
known, realistic speed (default 300 ms to the first token, then 25 ms per token). The limits are raised for
the run (bench/servers.py). A raw tritonclient phase with the same concurrency, in the same run, is the
baseline. Afterwards the database is read back:

- every turn ended `complete` (anything else, an HTTP error, or an error event, is an error);
- every user's conversation holds exactly the messages that user sent, in order, each answered;
- the app log never says "database is locked";
- event-loop lag, from the app's own probe (``guardchat_event_loop_lag_seconds`` on /metrics).

    python bench/load.py --users 64 --turns 3
    python bench/load.py --users 4 --turns 2 --quick     # seconds; what tests/resilience/test_load.py runs

Prints a markdown report; exits 1 if anything did not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python bench/load.py`: make `bench` and `webapp` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.clients import RawTriton
from bench.report import Machine
from bench.servers import App, Triton, guardchat_app, triton_server
from bench.stats import Dist
from bench.workload import DEFAULT_RAILS, SYNTHETIC_MODEL, Timing

REALISTIC = Timing(ttft_ms=300, itl_ms=25, tokens=64, guard_ms=0)
QUICK = Timing(ttft_ms=20, itl_ms=2, tokens=40, guard_ms=0)
LOCK_ERROR = "database is locked"


def user_text(user: int, turn: int) -> str:
    return f"Tell me about foxes and dogs (part {turn} for reader {user})."


# --- one user's conversation -------------------------------------------------------------------------------


@dataclass
class Turn:
    first_s: float | None = None
    total_s: float = 0.0
    tokens: int = 0
    error: str | None = None


@dataclass
class Conversation:
    user: int
    conversation_id: int | None = None
    turns: list[Turn] = field(default_factory=list)


async def stream_turn(
    client: httpx.AsyncClient, key: str, text: str, conversation_id: int | None
) -> tuple[Turn, int | None]:
    headers = {"Authorization": f"Bearer {key}"}
    if conversation_id is not None:
        headers["X-GuardChat-Conversation"] = str(conversation_id)
    body = {"model": "bench", "messages": [{"role": "user", "content": text}], "stream": True}
    turn = Turn()
    started = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            if response.status_code != 200:
                turn.error = f"HTTP {response.status_code}: {(await response.aread()).decode(errors='replace')[:200]}"
                return turn, conversation_id
            conversation_id = int(response.headers["X-GuardChat-Conversation"])
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    turn.error = f"error event: {event['error'].get('message')}"
                    continue
                if event["choices"][0]["delta"].get("content") and turn.first_s is None:
                    turn.first_s = time.perf_counter() - started
                if "guardchat" in event:
                    status = event["guardchat"]["status"]
                    turn.tokens = int(event.get("usage", {}).get("completion_tokens", 0))
                    if status != "complete":
                        turn.error = turn.error or f"turn ended {status}"
    except httpx.HTTPError as exc:
        turn.error = f"{type(exc).__name__}: {exc}"
    turn.total_s = time.perf_counter() - started
    return turn, conversation_id


async def converse(client: httpx.AsyncClient, key: str, user: int, turns: int, start: asyncio.Event) -> Conversation:
    conversation = Conversation(user)
    await start.wait()
    for index in range(turns):
        turn, conversation.conversation_id = await stream_turn(
            client, key, user_text(user, index), conversation.conversation_id
        )
        conversation.turns.append(turn)
        if turn.error and conversation.conversation_id is None:
            break  # nothing to continue
    return conversation


# --- the baseline: the same concurrency straight to Triton ---------------------------------------------------


async def raw_phase(triton: Triton, users: int, turns: int) -> tuple[list[float], list[float], float]:
    raw = RawTriton(triton.grpc_url)
    try:
        prompt = "<|im_start|>user\nTell me about foxes and dogs.<|im_end|>\n<|im_start|>assistant\n"
        await raw.tensors(SYNTHETIC_MODEL, prompt, triton.timing.tokens)

        async def one_user() -> list[tuple[float | None, float]]:
            results = []
            for _ in range(turns):
                timing = await raw.stream(SYNTHETIC_MODEL, prompt, triton.timing.tokens)
                results.append((timing.first_s, timing.total_s))
            return results

        started = time.perf_counter()
        done = await asyncio.gather(*(one_user() for _ in range(users)))
        elapsed = time.perf_counter() - started
    finally:
        await raw.close()
    flat = [pair for user in done for pair in user]
    return [f for f, _ in flat if f is not None], [t for _, t in flat], elapsed


# --- what the app reports about itself ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopLag:
    """Lag samples in one window; p99 and max are histogram bucket upper bounds ("at most")."""

    samples: int
    mean_ms: float
    p99_le_ms: float
    max_le_ms: float
    over_100ms: int


def _lag_histogram(metrics_text: str) -> tuple[dict[float, float], float, float]:
    buckets: dict[float, float] = {}
    total = count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "guardchat_event_loop_lag_seconds_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == "guardchat_event_loop_lag_seconds_sum":
                total = sample.value
            elif sample.name == "guardchat_event_loop_lag_seconds_count":
                count = sample.value
    return buckets, total, count


def loop_lag(before: str, after: str) -> LoopLag:
    """The lag samples taken between two /metrics scrapes of the app."""
    b_buckets, b_sum, b_count = _lag_histogram(before)
    a_buckets, a_sum, a_count = _lag_histogram(after)
    count = a_count - b_count
    cumulative = {le: a_buckets[le] - b_buckets.get(le, 0.0) for le in sorted(a_buckets)}
    p99 = next((le for le, n in cumulative.items() if count and n >= 0.99 * count), float("inf"))
    worst = next((le for le, n in cumulative.items() if n >= count), float("inf"))
    over_100 = count - cumulative.get(0.1, count)
    mean_ms = (a_sum - b_sum) / count * 1000 if count else 0.0
    return LoopLag(int(count), mean_ms, p99 * 1000, worst * 1000, int(over_100))


# --- reading the database back ---------------------------------------------------------------------------------


def verify_conversations(db_url: str, conversations: Sequence[Conversation], turns: int) -> list[str]:
    """Each user owns exactly one conversation: their own texts, in order, each followed by a complete reply."""
    from sqlalchemy import select

    from webapp.store.engine import Database
    from webapp.store.models import Conversation as Stored
    from webapp.store.models import Message, User

    problems: list[str] = []
    db = Database(db_url)
    try:
        with db.read() as session:
            for conversation in conversations:
                owner = session.scalars(select(User).where(User.username == f"bench{conversation.user}")).one()
                owned = list(session.scalars(select(Stored).where(Stored.owner_id == owner.id)))
                if [c.id for c in owned] != [conversation.conversation_id]:
                    problems.append(f"user {conversation.user}: conversations {[c.id for c in owned]}")
                    continue
                rows = session.execute(
                    select(Message.role, Message.status, Message.content)
                    .where(Message.conversation_id == owned[0].id)
                    .order_by(Message.seq)
                ).all()
                sent = [(role, status, content) for role, status, content in rows if role == "user"]
                replies = [(role, status) for role, status, _ in rows if role == "assistant"]
                expected = [("user", "complete", user_text(conversation.user, i)) for i in range(turns)]
                if sent != expected or [r for r, _, _ in rows] != ["user", "assistant"] * turns:
                    problems.append(f"user {conversation.user}: stored messages differ from what they sent: {rows}")
                elif any(status != "complete" for _, status in replies):
                    problems.append(f"user {conversation.user}: reply statuses {replies}")
    finally:
        db.dispose()
    return problems


# --- the run ------------------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    users: int
    turns: int
    timing: Timing
    conversations: list[Conversation]
    elapsed_s: float
    raw_first: list[float]
    raw_total: list[float]
    raw_elapsed_s: float
    lag: LoopLag
    problems: list[str]
    locked: int
    app_ready_s: float

    @property
    def all_turns(self) -> list[Turn]:
        return [t for c in self.conversations for t in c.turns]

    @property
    def errors(self) -> list[str]:
        missing = sum(self.turns - len(c.turns) for c in self.conversations)
        errors = [f"user {c.user}: {t.error}" for c in self.conversations for t in c.turns if t.error]
        return errors + ([f"{missing} turns never ran"] if missing else [])

    @property
    def ok(self) -> bool:
        return not self.errors and not self.problems and self.locked == 0

    def markdown(self) -> str:
        done = [t for t in self.all_turns if not t.error]
        first = Dist.of([t.first_s * 1000 for t in done if t.first_s is not None]) if done else None
        total = Dist.of([t.total_s * 1000 for t in done]) if done else None
        raw_first = Dist.of([x * 1000 for x in self.raw_first]) if self.raw_first else None
        raw_total = Dist.of([x * 1000 for x in self.raw_total]) if self.raw_total else None
        tokens = sum(t.tokens for t in done)

        def dist(d: Dist | None) -> str:
            return f"{d.p50:.0f} / {d.p99:.0f} ms" if d else "n/a"

        ratio = f"{total.p50 / raw_total.p50:.2f}" if total and raw_total else "n/a"
        lines = [
            f"## Load: {self.users} users × {self.turns} turns (streaming API, SQLite)",
            "",
            f"{self.timing.describe()}. Machine: {Machine.now().markdown()}. App ready after {self.app_ready_s:.1f} s.",
            "",
            "| measure | GuardChat | raw Triton (same run) |",
            "|---|---|---|",
            f"| turns completed | {len(done)} of {self.users * self.turns} | {len(self.raw_total)} |",
            f"| throughput | {len(done) / self.elapsed_s:.2f} turns/s, {tokens / self.elapsed_s:.0f} tokens/s "
            f"| {len(self.raw_total) / self.raw_elapsed_s:.2f} replies/s |",
            f"| time to first token p50 / p99 | {dist(first)} | {dist(raw_first)} |",
            f"| turn latency p50 / p99 | {dist(total)} | {dist(raw_total)} |",
            f"| latency ratio (p50, GuardChat ÷ raw) | {ratio} | 1 |",
            f"| event-loop lag: mean / p99 / max | {self.lag.mean_ms:.1f} ms / ≤ {self.lag.p99_le_ms:g} ms / "
            f"≤ {self.lag.max_le_ms:g} ms ({self.lag.samples} samples, {self.lag.over_100ms} over 100 ms) | |",
            f"| errors | {len(self.errors)} | |",
            f"| conversations read back wrong | {len(self.problems)} | |",
            f'| "{LOCK_ERROR}" in the app log | {self.locked} | |',
            "",
            "Output rails release a reply chunk by chunk (GUARDCHAT_OUTPUT_CHUNK_SIZE tokens), so GuardChat's first "
            "token waits for the model's first chunk, not its first token. Loop lag is how late the app's event "
            "loop woke a 50 ms sleep: a blocking call, or the process waiting for a CPU the load client and Triton "
            "share on this machine.",
        ]
        for error in (self.errors + self.problems)[:10]:
            lines.append(f"- {error}")
        return "\n".join(lines) + "\n"


async def drive(app: App, users: int, turns: int) -> tuple[list[Conversation], float, str, str]:
    limits = httpx.Limits(max_connections=users * 2, max_keepalive_connections=users * 2)
    async with httpx.AsyncClient(base_url=app.url, timeout=httpx.Timeout(300.0), limits=limits) as client:
        before = (await client.get("/metrics")).text
        start = asyncio.Event()
        tasks = [asyncio.create_task(converse(client, app.api_keys[u], u, turns, start)) for u in range(users)]
        started = time.perf_counter()
        start.set()
        conversations = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        after = (await client.get("/metrics")).text
    return list(conversations), elapsed, before, after


def run_load(users: int, turns: int, timing: Timing, workdir: Path, *, triton: Triton | None = None) -> LoadResult:
    """Start what is missing (Triton, the app), run both phases, read the database back."""
    if triton is None:
        with triton_server(timing, workdir, models=(SYNTHETIC_MODEL,)) as started:
            return run_load(users, turns, timing, workdir, triton=started)
    settings = {**DEFAULT_RAILS, "queue_concurrency": str(max(128, users * 2))}
    with guardchat_app(triton, workdir, model=SYNTHETIC_MODEL, users=users, settings=settings) as app:
        raw_first, raw_total, raw_elapsed = asyncio.run(raw_phase(triton, users, turns))
        conversations, elapsed, before, after = asyncio.run(drive(app, users, turns))
        log = app.log.read_text(encoding="utf-8", errors="replace")
        return LoadResult(
            users=users,
            turns=turns,
            timing=timing,
            conversations=conversations,
            elapsed_s=elapsed,
            raw_first=raw_first,
            raw_total=raw_total,
            raw_elapsed_s=raw_elapsed,
            lag=loop_lag(before, after),
            problems=verify_conversations(app.db_url, conversations, turns),
            locked=log.count(LOCK_ERROR),
            app_ready_s=app.ready_s,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/load.py", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a fast synthetic model (a smoke run, not a measure)")
    parser.add_argument("--ttft-ms", type=float, default=None, help="synthetic time to first token")
    parser.add_argument("--itl-ms", type=float, default=None, help="synthetic time between tokens")
    parser.add_argument("--tokens", type=int, default=None, help="synthetic tokens per reply")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else REALISTIC
    timing = Timing(
        ttft_ms=base.ttft_ms if args.ttft_ms is None else args.ttft_ms,
        itl_ms=base.itl_ms if args.itl_ms is None else args.itl_ms,
        tokens=base.tokens if args.tokens is None else args.tokens,
        guard_ms=0,
    )
    with tempfile.TemporaryDirectory(prefix="guardchat-load-") as workdir:
        result = run_load(args.users, args.turns, timing, Path(workdir))
    print(result.markdown())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
