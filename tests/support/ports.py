"""A free TCP port on loopback for a server a test is about to start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the OS just handed out and took back: nothing listens on it until the caller's server does."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
