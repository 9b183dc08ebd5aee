"""The real etcd 3.5 and nats-server 2.11 with the infra task's TLS and authentication settings.

The right credentials work; no credentials, wrong ones, another holder's identity or another
CA's certificate are refused by the real programs, and nothing changes on the server.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from devtools.planes import (
    RIGHT_NATS,
    WRONG_ETCD,
    WRONG_NATS,
    Planes,
    etcd_attempt,
    etcd_state,
    etcdctl,
    nats_attempt,
    planes_on_loopback,
)
from devtools.services import find_binary


@pytest.fixture(scope="module")
def planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planes]:
    with planes_on_loopback(tmp_path_factory.mktemp("planes")) as running:
        yield running


# --- etcd -----------------------------------------------------------------------------------


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


@pytest.mark.parametrize("kind", WRONG_ETCD)
def test_etcd_refuses_wrong_credentials_and_nothing_changes(planes: Planes, kind: str) -> None:
    before = etcd_state(planes)
    assert not etcd_attempt(planes, WRONG_ETCD[kind]), f"{kind}: the write was accepted"
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


def test_nats_accepts_dynamo_over_tls(planes: Planes) -> None:
    published, seen = nats_attempt(planes, RIGHT_NATS)
    assert published and seen


def test_nats_monitor_stays_plain_http(planes: Planes) -> None:
    with urllib.request.urlopen(f"{planes.infra.monitor_url}/varz", timeout=2) as response:
        varz = json.loads(response.read())
    assert varz["tls_required"] is True and varz["auth_required"] is True


@pytest.mark.parametrize("kind", WRONG_NATS)
def test_nats_refuses_wrong_credentials_and_nothing_is_delivered(planes: Planes, kind: str) -> None:
    published, seen = nats_attempt(planes, WRONG_NATS[kind])
    assert not published and not seen, kind
