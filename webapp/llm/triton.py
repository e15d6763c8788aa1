"""Async Triton client for chat models, whatever interface (dialect) the model is deployed with.

One client object serves one model and keeps one connection per event loop; after Triton becomes
unreachable the connection is dropped and rebuilt on the next call, so a restarted server is picked
up without restarting the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp
import grpc
import numpy as np
from tritonclient.utils import InferenceServerException

from webapp.llm.dialects import ModelInterface, RequestTensor, detect_interface
from webapp.llm.errors import (
    LLMError,
    ModelNotReadyError,
    ModelServerError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from webapp.llm.generation import ServerReport
from webapp.llm.params import GenerationParams
from webapp.llm.streaming import ReplyCleaner
from webapp.settings import Settings

log = logging.getLogger(__name__)

TritonProtocol = Literal["grpc", "http"]
# One response's requested outputs by name (None: the server did not send that one).
Outputs = dict[str, np.ndarray | None]


class _Transport(Protocol):
    """What the client needs from one protocol's tritonclient."""

    async def live(self) -> bool: ...
    async def model_ready(self, model: str) -> bool: ...
    async def describe(self, model: str) -> tuple[dict[str, Any], dict[str, Any]]: ...
    async def infer(self, model: str, tensors: list[RequestTensor], outputs: Sequence[str]) -> Outputs: ...
    def stream(
        self, model: str, tensors: list[RequestTensor], outputs: Sequence[str], idle_timeout: float
    ) -> AsyncGenerator[Outputs, None]: ...
    async def close(self) -> None: ...


def _text(array: np.ndarray | None) -> str | None:
    if array is None or array.size == 0:
        return None
    item = array.ravel()[0]
    return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)


def _count(array: np.ndarray | None) -> int | None:
    if array is None or array.size == 0:
        return None
    return int(array.ravel()[0])


class _ReplyReader:
    """One generation's responses in, clean text deltas out, noting what the server reports on the way."""

    def __init__(self, cleaner: ReplyCleaner, report: ServerReport, output: str) -> None:
        self._cleaner = cleaner
        self._report = report
        self._output = output

    @property
    def stopped(self) -> bool:
        return self._cleaner.stopped

    def feed(self, response: Outputs) -> str:
        self._report.note(
            finish_reason=_text(response.get("finish_reason")),
            prompt_tokens=_count(response.get("num_input_tokens")),
            completion_tokens=_count(response.get("num_output_tokens")),
        )
        chunk = _text(response.get(self._output))
        delta = self._cleaner.feed(chunk) if chunk is not None else ""
        if self._cleaner.stopped:
            self._report.stopped_at_stop_string = self._report.finished = True
        return delta

    def finish(self) -> str:
        """The server ended the generation: what was held back."""
        tail = self._cleaner.finish()
        self._report.stopped_at_stop_string = self._cleaner.stopped
        self._report.finished = True
        return tail


RECONNECT_BACKOFF_MAX_MS = 2000


class _GrpcTransport:
    def __init__(self, url: str, connect_timeout_s: float, request_timeout_s: float) -> None:
        import tritonclient.grpc.aio as grpcclient

        self._mod = grpcclient
        keepalive = grpcclient.KeepAliveOptions()
        self._client = grpcclient.InferenceServerClient(
            url=url,
            # channel_args replaces tritonclient's defaults, so its six default options are repeated here.
            channel_args=[
                ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
                ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
                ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
                ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
                ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
                ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
                # gRPC's reconnect backoff grows to 120 s after an outage: a Triton that is back would then stay
                # "not ready" for up to two minutes. Capped, the app sees it within RECONNECT_BACKOFF_MAX_MS.
                ("grpc.initial_reconnect_backoff_ms", 250),
                ("grpc.min_reconnect_backoff_ms", 250),
                ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
            ],
        )
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s

    def _inputs(self, tensors: list[RequestTensor]) -> list[Any]:
        inputs = []
        for tensor in tensors:
            item = self._mod.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)
            item.set_data_from_numpy(tensor.array)
            inputs.append(item)
        return inputs

    async def live(self) -> bool:
        return bool(await self._client.is_server_live(client_timeout=self._connect_timeout_s))

    async def model_ready(self, model: str) -> bool:
        return bool(await self._client.is_model_ready(model, client_timeout=self._connect_timeout_s))

    async def describe(self, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
        limit = self._connect_timeout_s
        metadata = await self._client.get_model_metadata(model, as_json=True, client_timeout=limit)
        config = await self._client.get_model_config(model, as_json=True, client_timeout=limit)
        return metadata, config

    async def infer(self, model: str, tensors: list[RequestTensor], outputs: Sequence[str]) -> Outputs:
        result = await self._client.infer(
            model,
            self._inputs(tensors),
            outputs=[self._mod.InferRequestedOutput(name) for name in outputs],
            request_id=uuid.uuid4().hex,
            client_timeout=self._request_timeout_s,
        )
        return {name: result.as_numpy(name) for name in outputs}

    async def stream(
        self, model: str, tensors: list[RequestTensor], outputs: Sequence[str], idle_timeout: float
    ) -> AsyncGenerator[Outputs, None]:
        request = {
            "model_name": model,
            "inputs": self._inputs(tensors),
            "outputs": [self._mod.InferRequestedOutput(name) for name in outputs],
            "request_id": uuid.uuid4().hex,
        }

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield request

        responses = self._client.stream_infer(requests())
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for starts a task per token.
                    async with asyncio.timeout(idle_timeout):
                        result, error = await anext(responses)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise TritonTimeoutError(
                        f"Model {model!r} sent nothing for {idle_timeout:g}s (idle timeout); "
                        "the server may be overloaded. Try again, or raise GUARDCHAT_TRITON_IDLE_TIMEOUT_S."
                    ) from None
                if error is not None:
                    raise error
                yield {name: result.as_numpy(name) for name in outputs}
        finally:
            # Ends the call on the server too: Triton cancels the request when its stream is cancelled.
            responses.cancel()

    async def close(self) -> None:
        await self._client.close()


class _HttpTransport:
    def __init__(self, url: str, connect_timeout_s: float, request_timeout_s: float) -> None:
        import tritonclient.http.aio as httpclient

        self._mod = httpclient
        self._client = httpclient.InferenceServerClient(url=url, conn_timeout=request_timeout_s)
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s

    async def live(self) -> bool:
        return bool(await asyncio.wait_for(self._client.is_server_live(), self._connect_timeout_s))

    async def model_ready(self, model: str) -> bool:
        return bool(await asyncio.wait_for(self._client.is_model_ready(model), self._connect_timeout_s))

    async def describe(self, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
        limit = self._connect_timeout_s
        metadata = await asyncio.wait_for(self._client.get_model_metadata(model), limit)
        config = await asyncio.wait_for(self._client.get_model_config(model), limit)
        return metadata, config

    async def infer(self, model: str, tensors: list[RequestTensor], outputs: Sequence[str]) -> Outputs:
        inputs = []
        for tensor in tensors:
            item = self._mod.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)
            item.set_data_from_numpy(tensor.array)
            inputs.append(item)
        result = await asyncio.wait_for(
            self._client.infer(
                model,
                inputs,
                outputs=[self._mod.InferRequestedOutput(name) for name in outputs],
                request_id=uuid.uuid4().hex,
            ),
            self._request_timeout_s,
        )
        return {name: result.as_numpy(name) for name in outputs}

    def stream(
        self, model: str, tensors: list[RequestTensor], outputs: Sequence[str], idle_timeout: float
    ) -> AsyncGenerator[Outputs, None]:
        raise ModelNotReadyError(
            f"Model {model!r} streams its replies (a decoupled model), which Triton serves over gRPC only. "
            "Set GUARDCHAT_TRITON_PROTOCOL=grpc and GUARDCHAT_TRITON_URL to the gRPC port."
        )

    async def close(self) -> None:
        await self._client.close()


_NOT_READY_HINTS = ("unknown model", "not found", "is not ready", "not ready", "unavailable model")


def _summary(message: str) -> str:
    """The useful line of a server error: Python backends send a whole traceback."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "no details"
    line = lines[-1] if lines[0].startswith("Traceback") else " ".join(lines)
    return line if len(line) <= 300 else line[:297] + "..."


@dataclass
class _Connection:
    transport: _Transport
    interface: ModelInterface | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class TritonChatClient:
    """Streams chat completions from one Triton model.

    ``stream`` yields text deltas with stop strings cut off; ``generate`` returns the whole reply.
    Failures raise the typed errors of ``webapp.llm.errors``.
    """

    def __init__(
        self,
        *,
        url: str,
        model_name: str,
        protocol: TritonProtocol = "grpc",
        connect_timeout_s: float = 5.0,
        idle_timeout_s: float = 30.0,
        request_timeout_s: float = 300.0,
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError(f"unknown Triton protocol {protocol!r}; expected 'grpc' or 'http'")
        self.url = url
        self.model_name = model_name
        self.protocol = protocol
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.request_timeout_s = request_timeout_s
        # gRPC aio channels belong to the event loop that made them (sync callers run their own loop).
        self._connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connection] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_settings(cls, settings: Settings, model_name: str | None = None) -> TritonChatClient:
        return cls(
            url=settings.triton_url,
            model_name=model_name or settings.triton_model,
            protocol=settings.triton_protocol,
            connect_timeout_s=settings.triton_connect_timeout_s,
            idle_timeout_s=settings.triton_idle_timeout_s,
            request_timeout_s=settings.triton_request_timeout_s,
        )

    def __repr__(self) -> str:
        return f"TritonChatClient(url={self.url!r}, model={self.model_name!r}, protocol={self.protocol!r})"

    # --- connection ------------------------------------------------------------------------

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is None:
            kind = _GrpcTransport if self.protocol == "grpc" else _HttpTransport
            transport: _Transport = kind(self.url, self.connect_timeout_s, self.request_timeout_s)
            connection = self._connections[loop] = _Connection(transport)
        return connection

    async def _forget(self, connection: _Connection) -> None:
        """Drop a connection that failed, so the next call builds a fresh channel."""
        loop = asyncio.get_running_loop()
        if self._connections.get(loop) is connection:
            del self._connections[loop]
        with contextlib.suppress(Exception):
            await connection.transport.close()

    def _translate(self, exc: BaseException, *, phase: str) -> LLMError:
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, TimeoutError):
            return TritonTimeoutError(
                f"Triton at {self.url} did not answer in time while {phase} for model {self.model_name!r}. "
                "It may be overloaded or unreachable; try again shortly."
            )
        status, message = "", str(exc)
        if isinstance(exc, grpc.aio.AioRpcError):
            status, message = exc.code().name, exc.details() or ""
        elif isinstance(exc, InferenceServerException):
            status, message = (exc.status() or "").removeprefix("StatusCode."), exc.message() or ""
        elif isinstance(exc, OSError | aiohttp.ClientConnectionError):
            status = "UNAVAILABLE"
        lowered = message.lower()
        if status == "DEADLINE_EXCEEDED":
            return TritonTimeoutError(
                f"Triton at {self.url} did not answer in time while {phase} for model {self.model_name!r}."
            )
        if any(hint in lowered for hint in _NOT_READY_HINTS) and "failed to connect" not in lowered:
            return ModelNotReadyError(
                f"Model {self.model_name!r} is not available on Triton at {self.url} ({message.strip()}). "
                "Check GUARDCHAT_TRITON_MODEL and that the model has finished loading."
            )
        if status == "UNAVAILABLE":
            return TritonUnavailableError(
                f"Triton at {self.url} ({self.protocol}) is unreachable: "
                f"{message.strip() or type(exc).__name__}. "
                "Start it (`guardchat model serve` for the local model) or fix GUARDCHAT_TRITON_URL."
            )
        return ModelServerError(
            f"Model {self.model_name!r} on Triton failed while {phase}: {_summary(message)}. "
            "Check the Triton server log; retrying may help if the failure was transient."
        )

    async def _failed(self, connection: _Connection, exc: BaseException, *, phase: str) -> LLMError:
        error = self._translate(exc, phase=phase)
        if isinstance(error, TritonUnavailableError):
            await self._forget(connection)
        elif isinstance(error, ModelNotReadyError):
            connection.interface = None  # the model may come back with another config
        return error

    async def interface(self) -> ModelInterface:
        """The served model's interface, read from its metadata and config once per connection."""
        connection = self._connection()
        if connection.interface is not None:
            return connection.interface
        async with connection.lock:
            if connection.interface is None:
                try:
                    metadata, config = await connection.transport.describe(self.model_name)
                    connection.interface = detect_interface(self.model_name, metadata, config)
                except Exception as exc:
                    raise await self._failed(connection, exc, phase="reading the model's metadata") from exc
                log.info(
                    "model %s on %s: %s interface, decoupled=%s",
                    self.model_name,
                    self.url,
                    connection.interface.dialect.value,
                    connection.interface.decoupled,
                )
        return connection.interface

    # --- public API ------------------------------------------------------------------------

    async def is_ready(self) -> bool:
        """Server live and model ready. Never raises."""
        try:
            connection = self._connection()
        except Exception:
            return False
        try:
            transport = connection.transport
            return await transport.live() and await transport.model_ready(self.model_name)
        except Exception as exc:
            await self._failed(connection, exc, phase="checking readiness")
            return False

    async def stream(
        self,
        prompt: str,
        params: GenerationParams,
        stop: Sequence[str] = (),
        *,
        report: ServerReport | None = None,
    ) -> AsyncGenerator[str, None]:
        """Yield the reply as text deltas, ending before the first stop string.

        ``report``: noted with what the server says about the generation (finish reason and token counts,
        where the model declares them) and whether the reply ended at a stop string.
        """
        interface = await self.interface()
        connection = self._connection()
        cleaner = ReplyCleaner(
            model_name=self.model_name,
            prompt=prompt,
            stop=stop,
            cumulative=interface.decoupled and interface.dialect.cumulative,
            may_echo_prompt=interface.may_echo_prompt,
            in_band_errors=interface.dialect.cumulative,
        )
        reply = _ReplyReader(cleaner, report if report is not None else ServerReport(), interface.output_name)
        tensors = interface.request(prompt, params, stop, streaming=interface.decoupled)
        if not interface.decoupled:
            try:
                response = await connection.transport.infer(self.model_name, tensors, interface.output_names)
            except Exception as exc:
                raise await self._failed(connection, exc, phase="generating a reply") from exc
            text = reply.feed(response) + reply.finish()
            if text:
                yield text
            return

        chunks = connection.transport.stream(self.model_name, tensors, interface.output_names, self.idle_timeout_s)
        try:
            try:
                async for response in chunks:
                    delta = reply.feed(response)
                    if delta:
                        yield delta
                    if reply.stopped:
                        return
            except (LLMError, GeneratorExit, asyncio.CancelledError):
                raise
            except Exception as exc:
                raise await self._failed(connection, exc, phase="streaming a reply") from exc
            tail = reply.finish()
            if tail:
                yield tail
        finally:
            await chunks.aclose()

    async def generate(
        self, prompt: str, params: GenerationParams, stop: Sequence[str] = (), *, report: ServerReport | None = None
    ) -> str:
        """The whole reply, ending before the first stop string (``report``: as for ``stream``)."""
        parts = [delta async for delta in self.stream(prompt, params, stop, report=report)]
        return "".join(parts)

    async def close(self) -> None:
        """Close this event loop's connection (others close with their loops)."""
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            connection = self._connections.pop(loop, None)
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.transport.close()
