"""Let pytriton streaming infer functions stop when Triton cancels their request.

pytriton 0.7 does not pass Triton's request cancellation to infer functions: after a client cancels a stream,
the generator runs to the end. `install_cancel_aware_proxy()` makes every model bound afterwards run
`cancel_aware_proxy.py` inside Triton, which raises a per-request flag file on cancellation; infer functions
call `cancel_requested(request)` between chunks. The stop happens at the next chunk after the cancel.

`begin_shutdown()` makes `shutting_down()` true, so streams end at their next chunk instead of holding
Triton's shutdown until they finish.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from pytriton.models import model as pytriton_model
from pytriton.proxy.types import Request

CANCEL_FLAG_PARAMETER = "guardchat_cancel_flag"
_PROXY_ENTRY = Path(__file__).with_name("cancel_aware_proxy.py")
_PYTRITON_ENTRY = "pytriton_model.py"
_shutdown = threading.Event()


def install_cancel_aware_proxy() -> None:
    """Ship cancel_aware_proxy.py as the python-backend entry of every pytriton model loaded from now on."""
    model_class: Any = pytriton_model.Model
    if getattr(model_class.get_proxy_model_files, "_cancel_aware", False):
        return
    original = model_class.get_proxy_model_files
    entry_source = _PROXY_ENTRY.read_bytes()

    def get_proxy_model_files(self: Any) -> dict[str, bytes]:
        files: dict[str, bytes] = original(self)
        prefix = f"file:{self.model_version}/"
        files[prefix + _PYTRITON_ENTRY] = files.pop(prefix + "model.py")
        files[prefix + "model.py"] = entry_source
        return files

    get_proxy_model_files._cancel_aware = True  # type: ignore[attr-defined]
    model_class.get_proxy_model_files = get_proxy_model_files


def cancel_requested(request: Request) -> bool:
    """True once Triton has cancelled ``request`` (a streamed request whose client went away)."""
    flag_path = (request.parameters or {}).get(CANCEL_FLAG_PARAMETER)
    return isinstance(flag_path, str) and os.path.exists(flag_path)


def begin_shutdown() -> None:
    """Ask every running generation to stop at its next chunk (the server is stopping)."""
    _shutdown.set()


def shutting_down() -> bool:
    return _shutdown.is_set()
