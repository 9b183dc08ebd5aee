"""Private addresses moto hands out, given a loopback meaning: ``10.a.b.c`` is ``127.a.b.c``.

All of 127.0.0.0/8 is this machine's loopback, so every task and every GPU instance gets an
address of its own on which its servers listen on their real ports (2379, 4222, 8000, ...),
as on a VPC. Nothing is ever sent to a 10.x address.
"""

from __future__ import annotations

import ipaddress
import os
import re

_PRIVATE_10 = re.compile(r"(?<![\d.])10\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def to_loopback(ip: str) -> str:
    """The loopback stand-in of a private 10.x address (other addresses are returned unchanged)."""
    address = ipaddress.ip_address(ip)
    if address.version == 4 and ip.startswith("10."):
        return "127." + ip.split(".", 1)[1]
    return ip


def to_loopback_text(text: str) -> str:
    """Every 10.x address inside ``text`` (a URL, a list of URLs) mapped to loopback."""
    return _PRIVATE_10.sub(lambda m: f"127.{m[1]}.{m[2]}.{m[3]}", text)


def vpc_octet() -> int:
    """The second octet of the local VPC (``10.N.0.0/16``): ``LOCAL_ECS_VPC_OCTET``, default 0.

    moto hands every fresh server the same addresses, so two checkouts running real
    deployments at once would both listen on 127.0.1.4:8000; each gets a VPC of its own.
    """
    raw = os.environ.get("LOCAL_ECS_VPC_OCTET", "0")
    if not raw.isdigit() or not 0 <= int(raw) <= 255:
        raise ValueError(f"LOCAL_ECS_VPC_OCTET={raw!r}: give a number from 0 to 255")
    return int(raw)


def vpc_cidr() -> str:
    return f"10.{vpc_octet()}.0.0/16"


def subnet_cidr(index: int) -> str:
    return f"10.{vpc_octet()}.{index}.0/24"


# Cloud Map's stand-in: names are given addresses in 10.N.250.0/24, a block no subnet uses.
NAME_BLOCK = 250


def name_address(index: int) -> str:
    """The loopback address standing for the ``index``-th private DNS name (Cloud Map's A record).

    A task registered under the name listens there, so whoever uses the name reaches the
    task registered under it now, as a DNS name does on AWS (without its caching).
    """
    if not 0 <= index < 254:
        raise ValueError(f"name index {index}: at most 254 names")
    return to_loopback(f"10.{vpc_octet()}.{NAME_BLOCK}.{index + 1}")
