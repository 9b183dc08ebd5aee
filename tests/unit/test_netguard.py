"""The loopback guard installed for every test refuses other addresses before any packet leaves."""

from __future__ import annotations

import socket

import pytest

from devtools.netguard import NonLoopbackConnectionError


def test_private_address_is_refused_immediately() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(NonLoopbackConnectionError):
        sock.connect(("10.1.2.3", 8000))


def test_loopback_is_allowed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
