from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.guard.scripted_model import BACKEND, SCRIPT, Script
from tests.support.paths import PROJECT_ROOT
from tests.support.settings import make_settings
from webapp.guard.turn import TurnGuard
from webapp.settings import Settings


class OutboundConnectionError(OSError):
    """A test tried to reach a host other than loopback."""


def _is_loopback(family: int, address: Any) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: outbound


@pytest.fixture(autouse=True)
def no_outbound_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Fail the test on any connection attempt beyond loopback, even one the code under test swallows."""
    attempts: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real: Any) -> Any:
        def connect(self: socket.socket, address: Any) -> Any:
            if not _is_loopback(self.family, address):
                attempts.append(address)
                raise OutboundConnectionError(f"outbound connection to {address!r} blocked in tests")
            return real(self, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
    yield attempts
    assert not attempts, f"the test tried to connect outside loopback: {attempts}"


def scripted_settings(**overrides: Any) -> Settings:
    """Settings fixed per process (not per test) so the loaded rails can be shared between tests."""
    values: dict[str, Any] = {
        "llm_backend": BACKEND,
        "rails_dir": PROJECT_ROOT / "rails",
        "data_dir": Path("/nonexistent-guardchat-tests"),
        "output_chunk_size": 8,
        "output_context_size": 2,
        "self_check_rails": True,
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
def script() -> Iterator[Script]:
    SCRIPT.reset()
    yield SCRIPT
    SCRIPT.reset()


@pytest.fixture(scope="session")
def guard() -> TurnGuard:
    """Rails loaded once for the session, with the scripted model behind the registry seam."""
    return TurnGuard.load(scripted_settings())
