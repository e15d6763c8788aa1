"""How late the event loop runs a task that asked to wake up: the cost of blocking calls on the loop.

A probe sleeps ``interval_s`` again and again; anything it wakes up later than that is time the loop spent
on something that did not yield (a sync DB call, a CPU-heavy rail, a blocking client). Exported as the
Prometheus histogram ``guardchat_event_loop_lag_seconds`` and the gauge of the worst lag so far.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Gauge, Histogram

LOOP_LAG_SECONDS = Histogram(
    "guardchat_event_loop_lag_seconds",
    "How much later than asked the event loop woke a sleeping task",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LOOP_LAG_MAX_SECONDS = Gauge("guardchat_event_loop_lag_max_seconds", "The worst event-loop lag seen since start-up")


class LoopLagProbe:
    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - asked - self.interval_s)
            LOOP_LAG_SECONDS.observe(lag)
            if lag > self.worst_s:
                self.worst_s = lag
                LOOP_LAG_MAX_SECONDS.set(lag)
