"""The real etcd 3.5 and nats-server 2.11 with the infra task's TLS and authentication settings.

The right credentials work; no credentials, wrong ones, another holder's identity or another
CA's certificate are refused by the real programs, and nothing changes on the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from devtools.planes import SecuredInfra, secured_infra
from devtools.services import find_binary
from dynamo_ecs.planes import credentials

NOW = dt.datetime.now(dt.UTC)


@dataclass
class Planes:
    infra: SecuredInfra
    payloads: dict[str, dict[str, str]]
    files: Path

    def pem(self, holder: str, key: str) -> str:
        """A holder's PEM field as a file (etcdctl takes paths)."""
        target = self.files / f"{holder}-{key}.pem"
        if not target.exists():
            target.write_text(self.payloads[holder][key])
        return str(target)


@pytest.fixture(scope="module")
def planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planes]:
    workdir = tmp_path_factory.mktemp("planes")
    authority = credentials.make_authority("dynamo", NOW)
    payloads = credentials.holder_payloads(authority, ["infra-0.dynamo-infra.internal"], NOW)
    # another deployment's CA issues a certificate with the same CN as Dynamo's
    stranger = credentials.holder_payloads(credentials.make_authority("other", NOW), [], NOW)
    payloads["stranger"] = stranger["dynamo"]
    files = workdir / "clients"
    files.mkdir()
    with secured_infra(workdir, payloads["infra"]) as infra:
        yield Planes(infra, payloads, files)


# --- etcd -----------------------------------------------------------------------------------


def etcdctl(
    planes: Planes, *args: str, holder: str | None, url: str | None = None, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    words = [
        find_binary("etcdctl"),
        f"--endpoints={url or planes.infra.etcd_url}",
        "--dial-timeout=2s",
        "--command-timeout=3s",
        f"--cacert={planes.pem('dynamo', 'ca_bundle')}",
        *extra,
    ]
    if holder == "root":
        words += [f"--cert={planes.pem('infra', 'root_cert')}", f"--key={planes.pem('infra', 'root_key')}"]
    elif holder is not None:
        words += [f"--cert={planes.pem(holder, 'client_cert')}", f"--key={planes.pem(holder, 'client_key')}"]
    return subprocess.run([*words, *args], capture_output=True, text=True, timeout=20, check=False)


def etcd_state(planes: Planes) -> tuple[str, str, str]:
    """Every key and value, the users and the auth status, read as root."""
    keys = etcdctl(planes, "get", "", "--prefix", "-w", "json", holder="root")
    users = etcdctl(planes, "user", "list", holder="root")
    status = etcdctl(planes, "auth", "status", holder="root")
    assert keys.returncode == 0 and users.returncode == 0, keys.stderr + users.stderr
    kvs = json.loads(keys.stdout).get("kvs", [])
    return json.dumps(sorted((kv["key"], kv["value"]) for kv in kvs)), users.stdout, status.stdout


def test_dynamo_identity_reads_and_writes_its_prefix(planes: Planes) -> None:
    put = etcdctl(planes, "put", "v1/test/instances/a", "x", holder="dynamo")
    assert put.returncode == 0, put.stderr
    got = etcdctl(planes, "get", "v1/test/instances/a", "--print-value-only", holder="dynamo")
    assert got.stdout.strip() == "x"
    assert etcdctl(planes, "del", "v1/test/instances/a", holder="dynamo").returncode == 0


def test_operator_identity_sees_members_and_health_only(planes: Planes) -> None:
    assert etcdctl(planes, "member", "list", holder="operator").returncode == 0
    health = etcdctl(planes, "endpoint", "health", holder="operator")
    assert health.returncode == 0 and "is healthy" in health.stdout + health.stderr
    before = etcd_state(planes)
    put = etcdctl(planes, "put", "v1/test/instances/fake", "x", holder="operator")
    assert put.returncode != 0 and "permission denied" in put.stderr
    assert etcdctl(planes, "get", "v1/", "--prefix", holder="operator").returncode != 0
    assert etcd_state(planes) == before


@dataclass(frozen=True)
class EtcdAttempt:
    holder: str | None
    url: str | None = None
    extra: tuple[str, ...] = ()
    key: str = "v1/dynamo/instances/fake-worker"


WRONG_ETCD = {
    "no client certificate": EtcdAttempt(holder=None),
    "another CA's certificate with Dynamo's CN": EtcdAttempt(holder="stranger"),
    "plain HTTP": EtcdAttempt(holder="dynamo", url="http://localhost:{port}"),
    "root's name with a guessed password": EtcdAttempt(holder=None, extra=("--user=root:root",)),
    "Dynamo's identity outside its prefix": EtcdAttempt(holder="dynamo", key="registry/fake"),
    "the operator's identity": EtcdAttempt(holder="operator"),
}


@pytest.mark.parametrize("kind", WRONG_ETCD)
def test_etcd_refuses_wrong_credentials_and_nothing_changes(planes: Planes, kind: str) -> None:
    case = WRONG_ETCD[kind]
    url = case.url.format(port=planes.infra.etcd_port) if case.url else None
    before = etcd_state(planes)
    attempt = etcdctl(planes, "put", case.key, "fake", url=url, holder=case.holder, extra=case.extra)
    assert attempt.returncode != 0, f"{kind}: the write was accepted"
    assert etcd_state(planes) == before


def test_a_client_identity_cannot_change_auth_or_membership(planes: Planes) -> None:
    before = etcd_state(planes)
    for args in (
        ("auth", "disable"),
        ("user", "add", "mallory", "--no-password"),
        ("role", "grant-permission", "dynamo", "readwrite", "", "--prefix=true"),
        ("member", "add", "rogue", "--peer-urls=https://127.0.0.1:1"),
    ):
        attempt = etcdctl(planes, *args, holder="dynamo")
        assert attempt.returncode != 0, args
    assert etcd_state(planes) == before
    assert "Authentication Status: true" in before[2]


def test_the_auth_script_is_safe_to_run_again(planes: Planes) -> None:
    from devtools.planes import run_script
    from dynamo_ecs.planes.infra_settings import etcd_auth_script

    before = etcd_state(planes)
    again = run_script(
        etcd_auth_script(
            str(planes.infra.directory),
            etcdctl=find_binary("etcdctl"),
            endpoint=f"https://127.0.0.1:{planes.infra.etcd_port}",
            wait_s=5,
        ),
        {},
    )
    assert again.returncode == 0, again.stdout + again.stderr
    after = etcd_state(planes)
    # the same keys and users, auth still on (re-granting the same permission bumps AuthRevision only)
    assert after[:2] == before[:2] and after[2].startswith("Authentication Status: true")


# --- NATS -----------------------------------------------------------------------------------


def tls_context(planes: Planes) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=planes.pem("dynamo", "ca_bundle"))


async def _connect(
    planes: Planes, url: str, tls: ssl.SSLContext | None, user: str | None, password: str | None
) -> Any:
    async def quiet(_: Exception) -> None:
        return None

    return await nats.connect(
        servers=[url],
        tls=tls,
        user=user,
        password=password,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
        error_cb=quiet,
    )


async def _publish_seen(
    planes: Planes, url: str, tls: ssl.SSLContext | None, user: str | None, password: str | None
) -> tuple[bool, bool]:
    """(the client connected and published, a subscriber with Dynamo's credentials saw it)."""
    dynamo = planes.payloads["dynamo"]
    watcher = await _connect(
        planes, planes.infra.nats_url, tls_context(planes), dynamo["nats_user"], dynamo["nats_password"]
    )
    seen: list[bytes] = []

    async def record(msg: Any) -> None:
        seen.append(msg.data)

    await watcher.subscribe("namespace.dynamo.>", cb=record)
    await watcher.flush()
    published = False
    try:
        client = await _connect(planes, url, tls, user, password)
        await client.publish("namespace.dynamo.kv_events", b"forged")
        await client.flush(timeout=2)
        await client.close()
        published = True
    except Exception:
        published = False
    await asyncio.sleep(0.3)
    await watcher.close()
    return published, bool(seen)


def test_nats_accepts_dynamo_over_tls(planes: Planes) -> None:
    dynamo = planes.payloads["dynamo"]
    published, seen = asyncio.run(
        _publish_seen(
            planes, planes.infra.nats_url, tls_context(planes), dynamo["nats_user"], dynamo["nats_password"]
        )
    )
    assert published and seen


def test_nats_monitor_stays_plain_http(planes: Planes) -> None:
    with urllib.request.urlopen(f"{planes.infra.monitor_url}/varz", timeout=2) as response:
        varz = json.loads(response.read())
    assert varz["tls_required"] is True and varz["auth_required"] is True


WRONG_NATS = {
    "no credentials": ("tls", None, None),
    "a wrong password": ("tls", "dynamo", "not-the-password"),
    "the routes' credentials as a client": ("tls", "route", "ROUTE"),
    "no TLS, right credentials": ("plain", "dynamo", "RIGHT"),
}


@pytest.mark.parametrize("kind", WRONG_NATS)
def test_nats_refuses_wrong_credentials_and_nothing_is_delivered(planes: Planes, kind: str) -> None:
    transport, user, password = WRONG_NATS[kind]
    password = {
        "ROUTE": planes.payloads["infra"]["nats_route_password"],
        "RIGHT": planes.payloads["dynamo"]["nats_password"],
    }.get(password or "", password)
    url = planes.infra.nats_url if transport == "tls" else f"nats://localhost:{planes.infra.nats_port}"
    tls = tls_context(planes) if transport == "tls" else None
    published, seen = asyncio.run(_publish_seen(planes, url, tls, user, password))
    assert not published and not seen, kind
