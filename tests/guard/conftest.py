from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.guard.network import OutboundConnectionError, is_loopback
from tests.support.guard.scripted_model import SCRIPT, Script, scripted_settings
from webapp.guard.turn import TurnGuard


@pytest.fixture(autouse=True)
def no_outbound_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Fail the test on any connection attempt beyond loopback, even one the code under test swallows."""
    attempts: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real: Any) -> Any:
        def connect(self: socket.socket, address: Any) -> Any:
            if not is_loopback(self.family, address):
                attempts.append(address)
                raise OutboundConnectionError(f"outbound connection to {address!r} blocked in tests")
            return real(self, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
    yield attempts
    assert not attempts, f"the test tried to connect outside loopback: {attempts}"


@pytest.fixture
def script() -> Iterator[Script]:
    SCRIPT.reset()
    yield SCRIPT
    SCRIPT.reset()


@pytest.fixture(scope="session")
def guard() -> TurnGuard:
    """Rails loaded once for the session, with the scripted model behind the registry seam."""
    return TurnGuard.load(scripted_settings())
