"""etcd's history and quota on the three-member tier, with the real etcd 3.5 run from the
members' own task definitions (the config file etcd-join writes; the planes on).

- each member compacts the history older than its retention (docs/infra-tier.md, "History and
  quota"): the template keeps 10 minutes, which a test cannot wait for, so this test registers
  the members' task definitions again with ``ETCD_AUTO_COMPACTION_RETENTION`` 5 s, the one
  value changed; the setting travels the same way (etcd-join's environment, the config file);
- a tier filled to its quota (NOSPACE) takes writes again after the documented way out, run as
  root (the infra secret's root certificate): compact, defragment each member in turn, disarm.
  The quota is made small (``ETCD_QUOTA_BACKEND_BYTES``) so that filling it takes seconds.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.local_ecs.infra import LocalTier, PlanesClient, local_tier, planes_client
from devtools.moto_stack import DeployedStack, revision_with_environment
from devtools.services import find_binary
from dynamo_ecs import aws
from dynamo_ecs.planes.infra_settings import ETCD_HISTORY_SETTINGS

pytestmark = pytest.mark.xdist_group("real_dynamo")  # fixed loopback addresses: one tier at a time

ROOT = Path(__file__).resolve().parents[3]
SHORT_RETENTION = "5s"
SMALL_QUOTA = 1_000_000  # bytes; a fresh member's database is 20-32 kB
FILL_VALUE = b"x" * 100_000


def with_join_environment(tier: LocalTier, **settings: str) -> None:
    """Register each member's task definition again with ``settings`` in etcd-join's environment
    (the values etcd-join writes into etcd's config file); nothing else changes."""
    for k, arn in enumerate(tier.definitions):
        tier.definitions[k] = revision_with_environment(arn, "etcd-join", settings, tier.ecs)


@pytest.fixture
def tier_with(deployed: DeployedStack, tmp_path: Path) -> Iterator[Any]:
    """Start the stack's tier with some of etcd-join's settings changed; stopped at the end."""
    tiers: list[LocalTier] = []

    def start(**settings: str) -> LocalTier:
        tier = local_tier(deployed, tmp_path)
        with_join_environment(tier, **settings)
        tiers.append(tier)
        tier.start()
        # etcd serves before its etcd-auth container has turned authentication on: wait for it
        deadline = time.monotonic() + 60
        while any(m.task.containers["etcd-auth"].exit_code() != 0 for m in tier.members.values()):
            assert time.monotonic() < deadline, {
                k: m.task.logs()["etcd-auth"] for k, m in tier.members.items()
            }
            time.sleep(0.5)
        return tier

    yield start
    for tier in tiers:
        tier.stop()


def identity(
    secret_arn: str, workdir: Path, cert: str = "client_cert", key: str = "client_key"
) -> PlanesClient:
    """A holder's etcd identity from its plane secret (the infra secret's root: ``root_cert``)."""
    payload = json.loads(aws.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
    workdir.mkdir(parents=True, exist_ok=True)
    for name, field in (("ca_bundle", "ca_bundle"), ("client_cert", cert), ("client_key", key)):
        (workdir / f"{name}.pem").write_text(payload[field])
        (workdir / f"{name}.pem").chmod(0o600)
    context = ssl.create_default_context(cafile=str(workdir / "ca_bundle.pem"))
    context.load_cert_chain(str(workdir / "client_cert.pem"), str(workdir / "client_key.pem"))
    return PlanesClient(context, workdir)


def etcdctl(
    client: PlanesClient, url: str, *args: str, value: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """etcdctl as ``client`` against ``url``; ``value`` on stdin (``put KEY`` reads it there)."""
    files = {k: str(client.directory / f"{k}.pem") for k in ("ca_bundle", "client_cert", "client_key")}
    words = [
        find_binary("etcdctl"),
        f"--endpoints={url}",
        "--dial-timeout=2s",
        "--command-timeout=10s",
        f"--cacert={files['ca_bundle']}",
        f"--cert={files['client_cert']}",
        f"--key={files['client_key']}",
        *args,
    ]
    return subprocess.run(
        words,
        input=value.decode() if value is not None else None,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def fill_until_refused(client: PlanesClient, urls: list[str]) -> str:
    """Rewrite one key under ``v1/`` with 100-kB values, the members in turn, until etcd refuses
    (100 writes at most); etcdctl's error then, or "" if every write was accepted."""
    for n in range(100):
        done = etcdctl(client, urls[n % len(urls)], "put", "v1/fill", value=FILL_VALUE)
        if done.returncode != 0:
            return done.stderr
    return ""


def status(client: PlanesClient, url: str) -> dict[str, Any]:
    done = etcdctl(client, url, "endpoint", "status", "-w", "json")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)[0]["Status"]
    return found


def seconds(duration: str) -> float:
    """A Go duration as etcd logs it (``10m0s``) or as it is set (``10m``), in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def documented_way_out() -> str:
    """The shell block of docs/infra-tier.md's way out (the only ``sh`` block of its section)."""
    text = (ROOT / "docs" / "infra-tier.md").read_text()
    section = text.split("## History and quota", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return str(block)


def started_with(tier: LocalTier, index: int) -> dict[str, Any]:
    """The settings member ``index``'s etcd says it started with (its first log line)."""
    log = tier.members[index].task.containers["etcd"].log_path.read_text()
    for line in log.splitlines():
        if '"starting an etcd server"' in line:
            found: dict[str, Any] = json.loads(line)
            return found
    raise AssertionError(f"member {index}'s etcd never logged its start:\n{log[-2000:]}")


def test_each_member_compacts_the_history_older_than_its_retention(tier_with: Any) -> None:
    # Given the tier with a 5-s retention (the template's 10 min, shortened: nothing else changed)
    tier = tier_with(ETCD_AUTO_COMPACTION_RETENTION=SHORT_RETENTION)
    dynamo = tier.planes
    assert dynamo is not None
    urls = [tier.members[k].etcd_url for k in range(3)]
    # Then every member's etcd started with the settings etcd-join wrote into its config file
    for k in range(3):
        settings = started_with(tier, k)
        assert settings["auto-compaction-mode"] == ETCD_HISTORY_SETTINGS["ETCD_AUTO_COMPACTION_MODE"]
        assert seconds(settings["auto-compaction-retention"]) == seconds(SHORT_RETENTION)
        assert settings["quota-size-bytes"] == int(ETCD_HISTORY_SETTINGS["ETCD_QUOTA_BACKEND_BYTES"])
    # When Dynamo's identity writes one key five times
    revisions = []
    for n in range(5):
        done = etcdctl(dynamo, urls[n % 3], "put", "v1/history/probe", f"value-{n}", "-w", "json")
        assert done.returncode == 0, done.stderr
        revisions.append(json.loads(done.stdout)["header"]["revision"])
    written_at = time.monotonic()

    def old_value_at(url: str) -> subprocess.CompletedProcess[str]:
        # serializable: this member's own store, not the leader's
        return etcdctl(
            dynamo,
            url,
            "get",
            "v1/history/probe",
            f"--rev={revisions[0]}",
            "--consistency=s",
            "--print-value-only",
        )

    # Then the first revision is still there at first (younger than the retention) ...
    assert old_value_at(urls[0]).stdout.strip() == "value-0"
    # ... and is compacted at every member once older than the retention
    compacted: dict[int, float] = {}
    deadline = written_at + 30
    while len(compacted) < 3 and time.monotonic() < deadline:
        for k, url in enumerate(urls):
            if k not in compacted and "required revision has been compacted" in old_value_at(url).stderr:
                compacted[k] = time.monotonic() - written_at
        time.sleep(0.5)
    assert sorted(compacted) == [0, 1, 2], f"compacted at {compacted} within 30 s"
    assert all(seconds >= 4 for seconds in compacted.values()), compacted  # not before the retention
    # and the live value is untouched
    for url in urls:
        read = etcdctl(dynamo, url, "get", "v1/history/probe", "--print-value-only")
        assert read.stdout.strip() == "value-4"
    print(f"etcd_history_compacted_after_s {max(compacted.values()):.1f} (retention {SHORT_RETENTION})")


def test_a_tier_at_its_quota_takes_writes_again_after_the_documented_way_out_as_root(
    deployed: DeployedStack, tier_with: Any, tmp_path: Path
) -> None:
    # Given the tier with a 1-MB quota (the template states etcd's 2 GiB: too big to fill here),
    # its 10-minute retention unchanged
    tier = tier_with(ETCD_QUOTA_BACKEND_BYTES=str(SMALL_QUOTA))
    dynamo = tier.planes
    assert dynamo is not None
    root = identity(deployed.planes["InfraSecretArn"], tmp_path / "root", "root_cert", "root_key")
    operator = planes_client(deployed.planes["OperatorSecretArn"], tmp_path / "operator")
    urls = [tier.members[k].etcd_url for k in range(3)]
    for k in range(3):
        settings = started_with(tier, k)
        assert settings["quota-size-bytes"] == SMALL_QUOTA
        assert seconds(settings["auto-compaction-retention"]) == seconds(
            ETCD_HISTORY_SETTINGS["ETCD_AUTO_COMPACTION_RETENTION"]
        )
    # When Dynamo's identity rewrites one key with 100-kB values until etcd refuses
    refused = fill_until_refused(dynamo, urls)
    # Then etcd refuses every write (NOSPACE), raised cluster-wide
    assert "database space exceeded" in refused, refused
    alarms = etcdctl(root, urls[0], "alarm", "list")
    assert "alarm:NOSPACE" in alarms.stdout, alarms
    for url in urls:
        put = etcdctl(dynamo, url, "put", "v1/small", "x")
        assert put.returncode != 0 and "database space exceeded" in put.stderr
    before = {url: status(root, url)["dbSize"] for url in urls}
    # and the operator's identity cannot defragment (its role has no permission at all)
    denied = etcdctl(operator, urls[0], "defrag")
    assert denied.returncode != 0 and "permission denied" in denied.stderr, denied
    # When root runs the way out: the documented block itself, with root's files, the members'
    # URLs and which one leads (docs/infra-tier.md, "History and quota")
    leader = next(
        url for url in urls if status(root, url)["leader"] == status(root, url)["header"]["member_id"]
    )
    followers = [url for url in urls if url != leader]
    for name, field in (("ca.pem", "ca_bundle"), ("root.pem", "client_cert"), ("root-key.pem", "client_key")):
        (root.directory / name).write_text((root.directory / f"{field}.pem").read_text())
    run = subprocess.run(
        ["sh", "-ec", documented_way_out()],
        cwd=root.directory,
        env={
            "PATH": f"{Path(find_binary('etcdctl')).parent}:/usr/bin:/bin",
            **{f"E{k}": url for k, url in enumerate(urls)},
            "FOLLOWER_A": followers[0],
            "FOLLOWER_B": followers[1],
            "LEADER": leader,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("Finished defragmenting etcd member") == 3, run.stdout
    assert "Authentication Status: true" in run.stdout, run.stdout
    # Then no alarm is left, every database is smaller, and writes are accepted at every member
    assert etcdctl(root, urls[0], "alarm", "list").stdout.strip() == ""
    after = {url: status(root, url)["dbSize"] for url in urls}
    assert all(after[url] < before[url] for url in urls), (before, after)
    for url in urls:
        put = etcdctl(dynamo, url, "put", "v1/small", "accepted")
        assert put.returncode == 0, put.stderr
    # and authentication is still on (etcd 3.5 checks no permission on writes while NOSPACE is raised)
    auth = etcdctl(root, urls[0], "auth", "status")
    assert "Authentication Status: true" in auth.stdout, auth
    print(f"etcd_nospace_db_bytes {max(before.values())} -> {max(after.values())} (quota {SMALL_QUOTA})")
