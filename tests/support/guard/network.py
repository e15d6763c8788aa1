"""What counts as an outbound connection: any address beyond loopback (the guard tests allow none)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any


class OutboundConnectionError(OSError):
    """A test tried to reach a host other than loopback."""


def is_loopback(family: int, address: Any) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: outbound
