"""Group a reply's streamed tokens into the chunks the output rails check before anyone sees them.

The first chunk is small, so the first checked text reaches the user about as soon as the model's first token
(``output_first_chunk_size``, 1 by default); each next chunk is twice as large, up to ``output_chunk_size``,
so a long reply costs few rail calls. A chunk also takes every token that arrived while the previous one was
being checked (up to the largest size), so a slow rail never leaves tokens queueing behind it. Every token is
in exactly one chunk, and no chunk is released before its check: only the sizes change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

TokenQueue = asyncio.Queue[str | Exception | None]  # None ends the reply; an exception is the model's failure


async def reply_chunks(tokens: TokenQueue, *, first: int, largest: int) -> AsyncGenerator[list[str], None]:
    """Chunks of ``tokens`` to check, in order. The model's exception is raised after the tokens before it."""
    if first < 1 or largest < first:
        raise ValueError(f"chunk sizes need 1 <= first ({first}) <= largest ({largest})")
    pending: list[str] = []
    failure: Exception | None = None
    size = first
    ended = False
    while True:
        while not ended and len(pending) < size:
            item = await tokens.get()
            while True:
                if item is None or isinstance(item, Exception):
                    ended, failure = True, item
                    break
                pending.append(item)
                if tokens.empty():
                    break
                item = tokens.get_nowait()
        if not pending:
            if failure is not None:
                raise failure
            return
        chunk, pending = pending[:largest], pending[largest:]
        yield chunk
        size = min(size * 2, largest)
