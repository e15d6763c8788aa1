"""How a reply's tokens are grouped into the chunks the output rails check."""

from __future__ import annotations

import asyncio

import pytest

from webapp.guard.chunks import TokenQueue, reply_chunks


async def collect(queue: TokenQueue, *, first: int, largest: int) -> list[list[str]]:
    return [chunk async for chunk in reply_chunks(queue, first=first, largest=largest)]


def queued(*items: str | Exception | None) -> TokenQueue:
    queue: TokenQueue = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    return queue


async def test_a_slow_stream_is_checked_in_doubling_chunks() -> None:
    queue: TokenQueue = asyncio.Queue()

    async def model() -> None:
        for index in range(20):
            await asyncio.sleep(0.001)
            queue.put_nowait(f"t{index} ")
        queue.put_nowait(None)

    producer = asyncio.create_task(model())
    chunks = await collect(queue, first=1, largest=8)
    await producer
    assert [len(c) for c in chunks] == [1, 2, 4, 8, 5]
    assert "".join(t for c in chunks for t in c) == "".join(f"t{i} " for i in range(20))


async def test_tokens_that_arrived_during_a_check_join_the_next_chunk_up_to_the_largest() -> None:
    queue = queued(*[f"t{i}" for i in range(20)], None)
    chunks = await collect(queue, first=1, largest=8)
    # Everything was waiting already: no reason to hold any token back for a smaller chunk.
    assert [len(c) for c in chunks] == [8, 8, 4]


async def test_a_model_failure_is_raised_after_the_chunks_before_it() -> None:
    failure = RuntimeError("model went away")
    chunks = reply_chunks(queued("a", "b", failure), first=2, largest=4)
    assert await anext(chunks) == ["a", "b"]
    with pytest.raises(RuntimeError, match="model went away"):
        await anext(chunks)


async def test_an_empty_reply_has_no_chunk() -> None:
    assert await collect(queued(None), first=1, largest=8) == []


async def test_sizes_are_validated() -> None:
    with pytest.raises(ValueError, match="first"):
        await collect(queued(None), first=0, largest=8)
