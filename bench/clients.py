"""The two clients the benchmarks time: raw tritonclient (the baseline) and GuardChat's API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.servers import App
from bench.workload import GREEDY


@dataclass(frozen=True)
class StreamTiming:
    """Seconds from sending the request: to the first text, to each chunk, to the end."""

    first_s: float | None
    chunk_s: tuple[float, ...]
    total_s: float
    status: str = "complete"
    message_id: int | None = None
    error: str | None = None


class RawTriton:
    """The baseline: plain ``tritonclient.grpc.aio`` calls with the tensors GuardChat's client would send.

    The tensors are built once, outside the timing, by GuardChat's own interface detection, so both sides
    ask the model for exactly the same thing.
    """

    def __init__(self, grpc_url: str) -> None:
        import tritonclient.grpc.aio as grpcclient

        self._grpc = grpcclient
        self.url = grpc_url
        self.client = grpcclient.InferenceServerClient(grpc_url)
        self._tensors: dict[tuple[str, str, int, tuple[str, ...]], list[Any]] = {}

    async def tensors(self, model: str, prompt: str, max_new_tokens: int, stop: Sequence[str] = ()) -> list[Any]:
        key = (model, prompt, max_new_tokens, tuple(stop))
        if key not in self._tensors:
            from webapp.llm.params import GenerationParams
            from webapp.llm.triton import TritonChatClient

            ours = TritonChatClient(url=self.url, model_name=model)
            try:
                interface = await ours.interface()
            finally:
                await ours.close()
            params = GenerationParams(**GREEDY, max_new_tokens=max_new_tokens)
            self._tensors[key] = interface.request(prompt, params, stop, streaming=interface.decoupled)
        return self._tensors[key]

    def _inputs(self, tensors: Sequence[Any]) -> list[Any]:
        inputs = []
        for tensor in tensors:
            item = self._grpc.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)
            item.set_data_from_numpy(tensor.array)
            inputs.append(item)
        return inputs

    async def stream(self, model: str, prompt: str, max_new_tokens: int, stop: Sequence[str] = ()) -> StreamTiming:
        tensors = await self.tensors(model, prompt, max_new_tokens, stop)
        request = {
            "model_name": model,
            "inputs": self._inputs(tensors),
            "outputs": [self._grpc.InferRequestedOutput("outputs")],
            "request_id": uuid.uuid4().hex,
        }

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield request

        started = time.perf_counter()
        first: float | None = None
        chunks: list[float] = []
        async for result, error in self.client.stream_infer(requests()):
            if error is not None:
                raise error
            text = result.as_numpy("outputs").ravel()[0]
            now = time.perf_counter() - started
            chunks.append(now)
            if first is None and text:
                first = now
        return StreamTiming(first_s=first, chunk_s=tuple(chunks), total_s=time.perf_counter() - started)

    async def infer(self, model: str, prompt: str, max_new_tokens: int) -> float:
        tensors = await self.tensors(model, prompt, max_new_tokens)
        started = time.perf_counter()
        await self.client.infer(model, self._inputs(tensors), outputs=[self._grpc.InferRequestedOutput("outputs")])
        return time.perf_counter() - started

    async def close(self) -> None:
        await self.client.close()


def api_client(app: App) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=app.url,
        timeout=httpx.Timeout(120.0),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
    )


async def api_turn(client: httpx.AsyncClient, api_key: str, text: str, max_tokens: int) -> StreamTiming:
    """One streamed turn through GuardChat's OpenAI-compatible API, timed from sending the request."""
    body = {"model": "bench", "messages": [{"role": "user", "content": text}], "stream": True, "max_tokens": max_tokens}
    started = time.perf_counter()
    first: float | None = None
    chunks: list[float] = []
    status, message_id, error = "error", None, None
    async with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {api_key}"}
    ) as response:
        if response.status_code != 200:
            detail = (await response.aread()).decode(errors="replace")[:200]
            return StreamTiming(None, (), time.perf_counter() - started, "http_error", None, detail)
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                error = str(event["error"].get("message"))
                continue
            now = time.perf_counter() - started
            if event["choices"][0]["delta"].get("content"):
                chunks.append(now)
                if first is None:
                    first = now
            if "guardchat" in event:
                status = event["guardchat"]["status"]
                message_id = event["guardchat"]["message_id"]
                error = error or event["guardchat"].get("error")
    return StreamTiming(first, tuple(chunks), time.perf_counter() - started, status, message_id, error)


def chatml_prompt(text: str) -> str:
    """The prompt GuardChat sends the model for a first turn ``text`` (no system prompt)."""
    from webapp.llm.templates import ChatTurn, get_template

    return get_template("chatml").render([ChatTurn("user", text)])
