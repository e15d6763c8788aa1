"""Streaming replies' checkpoints: one writer per process saves every stream's shown text in one transaction.

While a reply streams, the text shown so far is saved at most every ``stream_save_interval_s``, so a crashed
process loses at most that much of it (start-up recovery keeps the rest, marked interrupted). Each stream
used to save on its own, one write transaction per stream per interval. With 64 streams that was 32
transactions a second queueing on SQLite's single writer, in front of the transactions that start and end
turns. Here the streams only leave their latest text; one task commits whatever is due every ``tick_s``,
for all streams in one transaction (group commit).

A checkpoint that lands after its turn ended changes nothing: ``save_streamed_text`` only updates a message
that is still `streaming`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from webapp.store import conversations as conv
from webapp.store.engine import Database
from webapp.store.models import User

log = logging.getLogger(__name__)


@dataclass
class _Stream:
    user: User
    last_saved: float  # time.monotonic() of the last checkpoint taken (or of the stream's start)
    shown: list[str] = field(default_factory=list)  # the caller's pieces shown so far, joined at a checkpoint
    dirty: bool = False  # shown has changed since the last checkpoint
    urgent: bool = False  # save at the next tick, whatever the interval


class StreamCheckpoints:
    def __init__(self, database: Database, *, interval_s: float, tick_s: float = 0.05) -> None:
        self._db = database
        self._interval = interval_s
        self._tick = min(tick_s, interval_s)
        self._streams: dict[int, _Stream] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0  # checkpoint transactions committed (for tests and the bench)

    def begin(self, user: User, message_id: int) -> None:
        """A reply starts streaming: its first checkpoint is due one interval from now."""
        self._streams[message_id] = _Stream(user, time.monotonic())

    def offer(self, message_id: int, shown: list[str], *, now: bool = False) -> None:
        """``shown``: the pieces shown so far, the caller's own list (read, not copied, so a token costs no
        join). ``now``: save at the next tick (a retraction must not survive a crash)."""
        stream = self._streams.get(message_id)
        if stream is None:
            return
        stream.shown, stream.dirty = shown, True
        stream.urgent = stream.urgent or now
        if stream.urgent or time.monotonic() - stream.last_saved >= self._interval:
            self._wake_writer()

    def end(self, message_id: int) -> None:
        """The turn has its final status: nothing more to checkpoint."""
        self._streams.pop(message_id, None)

    def _wake_writer(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            # First use, or a new event loop (tests run one per test): the writer lives on the caller's loop.
            self._loop, self._wake = loop, asyncio.Event()
            self._task = loop.create_task(self._run(), name="stream checkpoints")
        assert self._wake is not None
        self._wake.set()

    def _due(self) -> list[tuple[User, int, str]]:
        now = time.monotonic()
        batch = []
        for message_id, stream in self._streams.items():
            if stream.dirty and (stream.urgent or now - stream.last_saved >= self._interval):
                batch.append((stream.user, message_id, "".join(stream.shown)))
                stream.dirty, stream.urgent, stream.last_saved = False, False, now
        return batch

    async def _run(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            await asyncio.sleep(self._tick)  # streams that come due meanwhile join this transaction
            batch = self._due()
            if not batch:
                continue
            try:
                await asyncio.to_thread(self._save, batch)
            except Exception:
                log.warning("could not save %d streaming replies so far", len(batch), exc_info=True)
            if any(s.dirty for s in self._streams.values()):
                wake.set()  # text arrived while saving: look again at the next tick

    def _save(self, batch: list[tuple[User, int, str]]) -> None:
        with self._db.write() as session:
            for user, message_id, text in batch:
                conv.save_streamed_text(session, user=user, message_id=message_id, content=text)
        self.transactions += 1
