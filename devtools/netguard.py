"""Keep local runs on loopback: refuse any socket connection to a non-loopback address.

moto hands out random private ``10.x`` addresses for tasks and instances. Code under test
resolves and then connects to such addresses (scrapes, monitors); on this machine those
must never leave the host. Installed by the test suite, the demo and the benchmarks, the
guard turns such a connection into an immediate ``ConnectionRefusedError`` (no packet is
sent), which the code under test sees as an unreachable target.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


class NonLoopbackConnectionError(ConnectionRefusedError):
    """A local run tried to reach an address off this machine."""


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise NonLoopbackConnectionError(f"local runs may only connect to loopback, not {host}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _original_connect_ex(self, address)


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    socket.socket.connect = _original_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _original_connect_ex  # type: ignore[method-assign]
