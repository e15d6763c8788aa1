"""Triton python-backend entry for pytriton models that tells infer functions about cancelled requests.

This file never runs in GuardChat's own process. `webapp.llm.triton_cancellation` ships it into Triton as
each model's ``model.py``, beside pytriton's own proxy renamed to ``pytriton_model.py``. pytriton 0.7 never
asks Triton whether a request was cancelled, so a streaming infer function would keep generating after the
client hung up. Here, before each streamed response, we ask Triton (``request.is_cancelled()``, python
backend >= 23.10) and, once it says yes, create a flag file whose path travels to the infer function in the
request parameters.
"""

# mypy: ignore-errors
import asyncio
import pathlib
import uuid

from . import pytriton_model as _pytriton
from .pytriton_model import TritonPythonModel  # noqa: F401 - the class Triton's python backend loads

# Keep in sync with webapp.llm.triton_cancellation.CANCEL_FLAG_PARAMETER (this file cannot import webapp).
CANCEL_FLAG_PARAMETER = "guardchat_cancel_flag"

_flag_paths: dict[int, pathlib.Path] = {}  # id(triton request) -> its flag file, while the request is live


class _FlagPathRequestsServer(_pytriton.TritonRequestsServer):
    def __init__(self, url, responses_handle_fn, serializer_deserializer, model_config):
        super().__init__(url, responses_handle_fn, serializer_deserializer, model_config)
        self._flag_dir = pathlib.Path(model_config["parameters"]["workspace-path"]["string_value"])
        self._decoupled = model_config.get("model_transaction_policy", {}).get("decoupled", False)

    def _wrap_request(self, triton_request, inputs, span=None):
        request = super()._wrap_request(triton_request, inputs, span)
        if not self._decoupled:  # a single response: nothing to stop part-way
            return request
        flag_path = self._flag_dir / f"cancelled-{uuid.uuid4().hex}"
        _flag_paths[id(triton_request)] = flag_path
        request.parameters[CANCEL_FLAG_PARAMETER] = flag_path.as_posix()
        return request


class _CancelWatchingQueue:
    """Wraps the responses queue: checks for cancellation each time a streamed response passes."""

    def __init__(self, queue: asyncio.Queue, triton_requests):
        self._queue = queue
        self._triton_requests = triton_requests
        self._flagged = False

    async def get(self):
        item = await self._queue.get()
        flags, _payload = item
        if not self._flagged and not flags & _pytriton.PyTritonResponseFlags.EOS:
            loop = asyncio.get_running_loop()
            if await loop.run_in_executor(None, self._all_cancelled):
                self._flagged = True
                for triton_request in self._triton_requests:
                    flag_path = _flag_paths.get(id(triton_request))
                    if flag_path is not None:
                        flag_path.touch()
        return item

    def task_done(self):
        self._queue.task_done()

    def _all_cancelled(self) -> bool:
        return all(triton_request.is_cancelled() for triton_request in self._triton_requests)


class _CancelAwareDecoupledResponsesHandler(_pytriton.DecoupledResponsesHandler):
    async def handle_responses(self, scope, responses_queue, responses_future):
        triton_requests = self._requests_map[scope["requests_id"]]
        try:
            return await super().handle_responses(
                scope, _CancelWatchingQueue(responses_queue, triton_requests), responses_future
            )
        finally:
            for triton_request in triton_requests:
                flag_path = _flag_paths.pop(id(triton_request), None)
                if flag_path is not None:
                    flag_path.unlink(missing_ok=True)


# pytriton_model.TritonPythonModel.initialize looks these names up in its module when it builds the model.
_pytriton.TritonRequestsServer = _FlagPathRequestsServer
_pytriton.DecoupledResponsesHandler = _CancelAwareDecoupledResponsesHandler
