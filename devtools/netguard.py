"""Keep local runs on loopback: refuse any socket connection to a non-loopback address.

moto hands out random private ``10.x`` addresses for tasks and instances. Code under test
resolves and then connects to such addresses (scrapes, monitors); on this machine those
must never leave the host. Installed by the test suite, the demo and the benchmarks, the
guard turns such a connection into an immediate ``ConnectionRefusedError`` (no packet is
sent), which the code under test sees as an unreachable target.

`mirror_private_to_loopback` gives every such address the meaning the local ECS gives it
(``10.a.b.c`` is ``127.a.b.c``, `devtools.local_ecs`), so the operator reaches the real
processes of a task at the address ECS (moto) reports for it. Older tests give single
addresses a local meaning instead:
`redirect` maps ``(10.x address, port)`` to a loopback port, like a NAT in front of the
simulated VPC, so the operator's unchanged code reaches the NATS monitor of "the infra task"
or the ``/metrics`` of "a frontend task" at the address ECS (moto) reports.

`resolving` is Cloud Map's stand-in for the operator's own process: a private DNS name (an
infra member's) resolves to the loopback address where the local ECS runs the task registered
under it (`devtools.local_ecs.addresses.name_address`), so the operator's unchanged code
connects by name, and TLS checks the certificate against that name, as on AWS.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator, Mapping
from typing import Any

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_getaddrinfo = socket.getaddrinfo
_names: dict[str, str] = {}


_redirects: dict[tuple[str, int], int] = {}
_mirror = False


def mirror_private_to_loopback(enabled: bool = True) -> None:
    """Connections to ``10.a.b.c:port`` go to ``127.a.b.c:port`` (where the local ECS runs that
    task's servers, `devtools.local_ecs.addresses`); explicit redirects still come first."""
    global _mirror
    _mirror = enabled


def redirect(host: str, port: int, loopback_port: int) -> None:
    """Connections to ``host:port`` go to ``127.0.0.1:loopback_port`` instead."""
    _redirects[(host, port)] = loopback_port


def clear_redirects(host: str | None = None) -> None:
    """Forget every redirect (or those of ``host``: a task that stopped)."""
    for key in [k for k in _redirects if host is None or k[0] == host]:
        del _redirects[key]


@contextlib.contextmanager
def resolving(names: Mapping[str, str]) -> Iterator[None]:
    """While inside, each of ``names`` (DNS name -> address) resolves to its address."""
    before = dict(_names)
    _names.update({name.lower(): address for name, address in names.items()})
    try:
        yield
    finally:
        _names.clear()
        _names.update(before)


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, str) and host.lower() in _names:
        host = _names[host.lower()]
    return _original_getaddrinfo(host, *args, **kwargs)


def _translate(sock: socket.socket, address: Any) -> Any:
    if sock.family == socket.AF_INET and isinstance(address, tuple) and len(address) == 2:
        target = _redirects.get((str(address[0]), int(address[1])))
        if target is not None:
            return ("127.0.0.1", target)
        if _mirror and _in_10_slash_8(str(address[0])):
            return ("127." + str(address[0]).split(".", 1)[1], int(address[1]))
    return address


def _in_10_slash_8(host: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network("10.0.0.0/8")
    except ValueError:
        return False


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
    address = _translate(self, address)
    _check(self, address)
    _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    address = _translate(self, address)
    _check(self, address)
    return _original_connect_ex(self, address)


def install() -> None:
    socket.getaddrinfo = _getaddrinfo
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    socket.getaddrinfo = _original_getaddrinfo
    socket.socket.connect = _original_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _original_connect_ex  # type: ignore[method-assign]
