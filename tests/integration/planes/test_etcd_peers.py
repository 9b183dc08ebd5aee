"""Only the member certificate can be an etcd peer (``ETCD_PEER_CERT_ALLOWED_CN``), on the real etcd 3.5.

Even once root has added a member, a process presenting another certificate of the stack's CA
(here one that could serve, but with Dynamo's CN) never joins; one with the members' CN does.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from devtools.planes import Planes, etcdctl, planes_on_loopback
from devtools.services import LOOPBACK, ManagedProcess, find_binary, free_port
from dynamo_ecs.planes import credentials
from dynamo_ecs.planes.infra_settings import MEMBER_CN, etcd_tls_environment


def start_member(planes: Planes, workdir: Path, common_name: str) -> tuple[ManagedProcess, str]:
    """Root adds a member; a process with a certificate of ``common_name`` starts as it."""
    authority = credentials.Authority(planes.payloads["ca"]["ca_cert"], planes.payloads["ca"]["ca_key"])
    leaf = credentials.issue(
        authority, common_name, dt.datetime.now(dt.UTC), server_names=["localhost", LOOPBACK]
    )
    files = workdir / "planes"
    files.mkdir(parents=True)
    (files / "member.pem").write_text(leaf.cert_pem)
    (files / "member-key.pem").write_text(leaf.key_pem)
    (files / "ca.pem").write_text(planes.payloads["infra"]["ca_bundle"])
    peer = f"https://{LOOPBACK}:{free_port()}"
    added = etcdctl(planes, "member", "add", "second", f"--peer-urls={peer}", holder="root")
    assert added.returncode == 0, added.stderr
    env = {
        "ETCD_NAME": "second",
        "ETCD_DATA_DIR": str(workdir / "data"),
        "ETCD_LISTEN_CLIENT_URLS": f"https://{LOOPBACK}:{free_port()}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"https://{LOOPBACK}:{free_port()}",
        "ETCD_LISTEN_PEER_URLS": peer,
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": peer,
        "ETCD_INITIAL_CLUSTER": f"infra=https://{LOOPBACK}:{planes.infra.peer_port},second={peer}",
        "ETCD_INITIAL_CLUSTER_STATE": "existing",
        **etcd_tls_environment(str(files)),
    }
    process = ManagedProcess(
        "second", [find_binary("etcd")], ready=lambda: True, env=env, log_path=workdir / "second.log"
    )
    process.start()
    return process, peer


def started(planes: Planes, within_s: float) -> bool:
    """Whether the added member has started (a name in the member list), as the first member sees it."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        listed = etcdctl(planes, "member", "list", "-w", "json", holder="root")
        if listed.returncode == 0 and all(m.get("name") for m in json.loads(listed.stdout)["members"]):
            return True
        time.sleep(0.5)
    return False


@pytest.mark.parametrize(("common_name", "joins"), [("dynamo", False), (MEMBER_CN, True)])
def test_only_the_members_certificate_is_a_peer(tmp_path: Path, common_name: str, joins: bool) -> None:
    with planes_on_loopback(tmp_path / "first") as planes:
        process, _ = start_member(planes, tmp_path / "second", common_name)
        try:
            log = tmp_path / "second" / "second.log"
            assert started(planes, within_s=15) is joins, log.read_text()[-800:]
        finally:
            process.stop()
