"""The three-member tier of template.yaml, run from its own task definitions by the real etcd and
nats-server: it forms one etcd cluster and one NATS cluster, and a member whose task is
replaced (its data gone with it) rejoins under its name, the way etcd documents it."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import boto3
import pytest

from devtools.local_ecs.client import get
from devtools.local_ecs.containers import ContainerStartError
from devtools.local_ecs.infra import LocalTier, local_tier, running_tier
from devtools.moto_stack import DeployedStack
from devtools.planes import etcd_put_without_certificate, nats_answer
from devtools.services import http_ok

pytestmark = pytest.mark.xdist_group("real_dynamo")  # fixed loopback addresses: one tier at a time


def started(members: list[dict[str, object]]) -> dict[str, str]:
    """name -> peer URL of the members that have started (one that never did has no client URL)."""
    return {str(m["name"]): str(m["peerURLs"][0]) for m in members if m.get("clientURLs")}  # type: ignore[index]


def routes(tier: LocalTier, index: int) -> set[str]:
    """The NATS servers member ``index``'s node has a route to (its monitor's /routez)."""
    status, body = get(f"{tier.members[index].monitor_url}/routez", timeout_s=3)
    if status != 200:
        return set()
    answer = json.loads(body)
    return {str(r.get("remote_name") or r.get("remote_id")) for r in answer.get("routes") or []}


def wait_for(check: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_the_three_members_form_one_etcd_cluster_and_one_nats_cluster(
    deployed: DeployedStack, tmp_path: Path
) -> None:
    # Given the stack's three member services, each started from its registered task definition
    with running_tier(deployed, tmp_path) as tier:
        names = tier.member_names
        # Then etcd has three started members, named infra-0..2, each at its DNS name's peer URL
        members = started(tier.etcd_members())
        assert members == {f"infra-{k}": f"https://{tier.names[names[k]]}:2380" for k in range(3)}
        # and a write through one member is read through every other
        tier.put(tier.members[0].etcd_url, "v1/probe", "written-at-0")
        for k in (1, 2):
            assert wait_for(
                lambda k=k: tier.value_at(tier.members[k].etcd_url, "v1/probe") == "written-at-0", 5
            )
        # and every NATS node has routes to both others
        for k in range(3):
            assert wait_for(lambda k=k: routes(tier, k) >= {f"infra-{j}" for j in range(3) if j != k}, 10), (
                routes(tier, k)
            )


def test_a_replaced_member_rejoins_under_its_name_with_a_new_identity(
    deployed: DeployedStack, tmp_path: Path
) -> None:
    with running_tier(deployed, tmp_path) as tier:
        before = {m["name"]: m["ID"] for m in tier.etcd_members()}
        tier.put(tier.members[0].etcd_url, "v1/kept", "yes")
        # When member 1's task stops (its data goes with it) and its service starts a new one
        stopped_at = time.monotonic()
        tier.replace_member(1, "Task stopped: host maintenance")
        rejoined_s = time.monotonic() - stopped_at
        # Then the new task was removed-and-added (a new member ID) under the same name and peer URL
        after = {m["name"]: m["ID"] for m in tier.etcd_members()}
        assert set(after) == {"infra-0", "infra-1", "infra-2"}, tier.etcd_members()
        assert after["infra-1"] != before["infra-1"]
        assert (after["infra-0"], after["infra-2"]) == (before["infra-0"], before["infra-2"])
        assert len(tier.etcd_members()) == 3  # the old identity is gone, not left as a fourth member
        # and it holds what was written before it came (replicated from the others)
        assert wait_for(lambda: tier.value_at(tier.members[1].etcd_url, "v1/kept") == "yes", 5)
        # and its NATS node has routes to both others again
        assert wait_for(lambda: routes(tier, 1) >= {"infra-0", "infra-2"}, 15), routes(tier, 1)
        assert rejoined_s < 30, rejoined_s
        logs = tier.members[1].task.logs(20)["etcd-join"]
        assert "whose data is gone: removing it" in logs and "state existing" in logs, logs


def test_two_members_lost_at_once_no_replacement_joins_and_a_full_restart_recovers(
    deployed: DeployedStack, tmp_path: Path
) -> None:
    with running_tier(deployed, tmp_path) as tier:
        survivor = tier.member_id(0)
        assert survivor
        # Given two members lost at once: the survivor has no quorum
        tier.stop_member(1, "Task stopped: zone outage")
        tier.stop_member(2, "Task stopped: zone outage")
        # When member 1's service starts a new task
        began = time.monotonic()
        with pytest.raises(ContainerStartError, match="etcd-join exited with 1"):
            tier.start_member(1)
        # Then its join is refused within bounds (no member add without quorum), etcd never
        # starts, and the task stops as ECS would stop it; nothing of the survivor changed
        assert time.monotonic() - began < 30
        index, _, reason = tier.stopped[-1]
        assert index == 1 and "etcd-join exited with 1" in reason, reason
        # (etcdctl lists members only with a quorum: the survivor answers as the same member)
        assert tier.members[0].task.check() is None and tier.member_id(0) == survivor
        # When every member's task is replaced (the recovery docs/template.md gives)
        tier.stop_member(0, "Task stopped: recovery of the tier")
        tier.start()
        # Then a new tier forms, empty, as a replaced single task is
        assert set(started(tier.etcd_members())) == {"infra-0", "infra-1", "infra-2"}
        assert tier.value_at(tier.members[0].etcd_url, "v1/probe") is None


def test_created_one_member_after_another_the_tier_forms(deployed: DeployedStack, tmp_path: Path) -> None:
    # Given CloudFormation's order: each member's service is created once the one before is
    # stable, and a member's task is stable once it runs (no health check holds it)
    tier = local_tier(deployed, tmp_path)
    try:
        first = tier.start_member(0, wait=False)
        # When member 0 runs alone: etcd has no quorum, but the task keeps running
        time.sleep(5)
        assert first.task.check() is None, first.task.logs(8)
        tier.start_member(1, wait=False)
        # Then members 0 and 1 bootstrap the cluster together
        for k in (0, 1):
            tier.members[k].task.wait_until(tier.members[k].ready, 30, f"member {k}")
        # and member 2, created last, joins the cluster they formed (added at its bootstrap URL)
        tier.start_member(2)
        assert set(started(tier.etcd_members())) == {"infra-0", "infra-1", "infra-2"}
        assert "already added: joining" in tier.members[2].task.logs(20)["etcd-join"]
    finally:
        tier.stop()


def test_the_running_tier_refuses_clients_without_the_planes_credentials(
    deployed: DeployedStack, tmp_path: Path
) -> None:
    secrets = boto3.client("secretsmanager")
    dynamo = json.loads(secrets.get_secret_value(SecretId=deployed.planes["DynamoSecretArn"])["SecretString"])
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(dynamo["ca_bundle"])
    with running_tier(deployed, tmp_path) as tier:
        assert tier.planes is not None
        member = tier.members[0]
        tier.put(member.etcd_url, "v1/probe", "dynamo")  # the control: Dynamo's identity writes
        # etcd: plain HTTP, or TLS without a client certificate, never gets a key in
        assert not http_ok(f"http://{member.address}:2379/health")
        no_cert = etcd_put_without_certificate(member.etcd_url, ca_file, "v1/probe", "intruder")
        assert no_cert.returncode != 0, no_cert.stdout
        assert tier.value_at(member.etcd_url, "v1/probe") == "dynamo"
        # NATS: without TLS, or over TLS without the user's password, refused; with it, served
        verified = ssl.create_default_context(cafile=str(ca_file))
        plain = nats_answer(member.address, None, {})  # the server expects a TLS handshake
        assert "PONG" not in plain, plain
        assert "Authorization Violation" in nats_answer(member.address, verified, {})
        wrong = {"user": dynamo["nats_user"], "pass": "not-the-password"}
        assert "Authorization Violation" in nats_answer(member.address, verified, wrong)
        right = {"user": dynamo["nats_user"], "pass": dynamo["nats_password"]}
        assert nats_answer(member.address, verified, right).startswith("PONG")
