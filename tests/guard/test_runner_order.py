"""Rails of a stage run concurrently, yet the refusal names the rail that running them in order would name."""

from __future__ import annotations

import asyncio

from webapp.guard.runner import _first_stop_concurrently


class Flows:
    """Flows that finish after a set delay and either stop the turn or pass it."""

    def __init__(self, delays: dict[str, float], stopping: set[str]) -> None:
        self.delays = delays
        self.stopping = stopping
        self.finished: list[str] = []
        self.cancelled: list[str] = []

    async def run(self, flow: str) -> str:
        try:
            await asyncio.sleep(self.delays[flow])
        except asyncio.CancelledError:
            self.cancelled.append(flow)
            raise
        self.finished.append(flow)
        return flow

    def stops(self, flow: str) -> bool:
        return flow in self.stopping


async def test_a_slower_earlier_rail_that_blocks_is_named_over_a_faster_later_one() -> None:
    flows = Flows({"check jailbreak": 0.05, "check request safety": 0.0}, {"check jailbreak", "check request safety"})

    named = await _first_stop_concurrently(["check jailbreak", "check request safety"], flows.run, flows.stops)

    assert named == "check jailbreak"
    assert flows.finished == ["check request safety", "check jailbreak"]


async def test_a_later_rail_is_named_when_the_earlier_rails_pass() -> None:
    flows = Flows({"check language": 0.05, "check request safety": 0.0}, {"check request safety"})

    named = await _first_stop_concurrently(["check language", "check request safety"], flows.run, flows.stops)

    assert named == "check request safety"


async def test_a_block_cancels_the_rails_listed_after_it_without_waiting_for_them() -> None:
    flows = Flows({"check abuse input": 0.0, "self check input": 30.0}, {"check abuse input"})

    named = await asyncio.wait_for(
        _first_stop_concurrently(["check abuse input", "self check input"], flows.run, flows.stops), timeout=10
    )

    assert named == "check abuse input"
    assert flows.cancelled == ["self check input"]


async def test_no_rail_stopping_names_none_after_every_rail_ran() -> None:
    flows = Flows({"a": 0.01, "b": 0.0, "c": 0.02}, set())

    assert await _first_stop_concurrently(["a", "b", "c"], flows.run, flows.stops) is None
    assert sorted(flows.finished) == ["a", "b", "c"]
