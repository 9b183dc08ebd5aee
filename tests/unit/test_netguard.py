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


def test_a_redirected_private_address_reaches_its_loopback_port() -> None:
    from devtools import netguard

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        netguard.redirect("10.9.8.7", 8000, server.getsockname()[1])
        try:
            with socket.create_connection(("10.9.8.7", 8000), timeout=2) as client:
                assert client.getpeername() == server.getsockname()
            # another port of the same address stays refused
            with socket.socket() as other, pytest.raises(NonLoopbackConnectionError):
                other.connect(("10.9.8.7", 8001))
        finally:
            netguard.clear_redirects("10.9.8.7")
        with socket.socket() as after, pytest.raises(NonLoopbackConnectionError):
            after.connect(("10.9.8.7", 8000))
