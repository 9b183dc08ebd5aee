"""Dynamo's NATS password rotated on the real nats-server 2.11, in the documented roll order.

Two members route to each other, each started from the infra task's own writer script with the
infra secret as it is when the member is rolled (`devtools.planes.secured_infra`). Between the
steps every member accepts the credentials every Dynamo process holds (those of a GPU task not
rolled yet and of one rolled after ``issue``), and messages cross the routes; after ``retire``
and a roll the old user is refused. The routes' password is not rotated: nats-server refuses a
second cluster user.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats

from devtools.planes import SecuredInfra, routes_within, run_script, secured_infra, writer_environment
from devtools.services import LOOPBACK, find_binary, free_port
from dynamo_ecs import aws
from dynamo_ecs.planes import credentials
from dynamo_ecs.planes.infra_settings import NATS_CONFIG, writer_script
from dynamo_ecs.planes.rotation import rotate
from dynamo_ecs.planes.secrets_store import ensure_plane_secrets, secret_name

Credentials = tuple[str, str]


def secret(holder: str) -> dict[str, str]:
    answer = aws.client("secretsmanager").get_secret_value(SecretId=secret_name("dynamo", holder))
    return dict(json.loads(answer["SecretString"]))


def dynamo_credentials() -> Credentials:
    held = secret("dynamo")
    return held["nats_user"], held["nats_password"]


class Member:
    """One infra member: its ports stay, each roll starts it again from the infra secret as it is now."""

    def __init__(self, workdir: Path, ports: list[int], index: int) -> None:
        self.workdir, self.ports, self.index = workdir, ports, index
        self.nats_port = free_port()
        self.stack: contextlib.ExitStack | None = None
        self.node: SecuredInfra | None = None

    def roll(self) -> None:
        self.stop()
        self.stack = contextlib.ExitStack()
        self.node = self.stack.enter_context(
            secured_infra(
                self.workdir,
                secret("infra"),
                cluster_name="dynamo",
                routes=[f"localhost:{port}" for port in self.ports],
                cluster_port=self.ports[self.index],
                nats_port=self.nats_port,
                with_etcd=False,
            )
        )

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.close()
            self.stack = self.node = None

    @property
    def url(self) -> str:
        assert self.node is not None
        return self.node.nats_url


@contextlib.contextmanager
def two_members(tmp_path: Path) -> Iterator[list[Member]]:
    ports = [free_port(), free_port()]
    members = [Member(tmp_path / f"member-{k}", ports, k) for k in range(2)]
    try:
        for member in members:
            member.roll()
        yield members
    finally:
        for member in members:
            member.stop()


def wait_for_routes(members: list[Member]) -> None:
    for member in members:
        assert member.node is not None and routes_within(member.node, within_s=15) > 0


async def _connect(url: str, credentials: Credentials, cafile: str) -> Any:
    async def quiet(_: Exception) -> None:
        return None

    return await nats.connect(
        servers=[url],
        tls=ssl.create_default_context(cafile=cafile),
        user=credentials[0],
        password=credentials[1],
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
        error_cb=quiet,
    )


def delivered(
    publisher: tuple[Member, Credentials], subscriber: tuple[Member, Credentials], cafile: str
) -> bool:
    """Whether a client with ``publisher``'s credentials on its member publishes a message that a
    client with ``subscriber``'s credentials on its member receives (False if either is refused)."""

    async def attempt() -> bool:
        try:
            receiver = await _connect(subscriber[0].url, subscriber[1], cafile)
        except Exception:
            return False
        seen: list[bytes] = []

        async def record(msg: Any) -> None:
            seen.append(msg.data)

        await receiver.subscribe("namespace.dynamo.rotation", cb=record)
        await receiver.flush()
        try:
            sender = await _connect(publisher[0].url, publisher[1], cafile)
        except Exception:
            await receiver.close()
            return False
        # subscriptions reach the other member through the route shortly after the flush
        for _ in range(20):
            await sender.publish("namespace.dynamo.rotation", b"event")
            await sender.flush(timeout=2)
            await asyncio.sleep(0.1)
            if seen:
                break
        await sender.close()
        await receiver.close()
        return bool(seen)

    return asyncio.run(attempt())


def accepted(member: Member, credentials: Credentials, cafile: str) -> bool:
    """A client with ``credentials`` connects to ``member`` and publishes to itself."""
    return delivered((member, credentials), (member, credentials), cafile)


def test_each_member_accepts_what_every_dynamo_process_holds_throughout_the_roll_order(
    aws_env: Any, tmp_path: Path
) -> None:
    ensure_plane_secrets("dynamo", [])
    old = dynamo_credentials()
    ca = tmp_path / "ca.pem"

    def trust_now() -> str:  # a client's CA bundle as the Dynamo secret holds it now
        ca.write_text(secret("dynamo")["ca_bundle"])
        return str(ca)

    with two_members(tmp_path) as (a, b):
        wait_for_routes([a, b])
        assert accepted(a, old, trust_now()) and accepted(b, old, trust_now())
        # trust: a next user with a new password; Dynamo still presents the old one
        rotate("dynamo", "trust")
        assert dynamo_credentials() == old
        listed = [tuple(entry.split(":")) for entry in secret("infra")["nats_dynamo_users"].split()]
        assert listed[0] == old and len(listed) == 2
        nxt = (listed[1][0], listed[1][1])
        assert nxt[0] == "dynamo-2" and nxt[1] != old[1]
        a.roll()
        wait_for_routes([a, b])
        assert accepted(a, old, trust_now()) and accepted(b, old, trust_now())
        assert accepted(a, nxt, trust_now())
        assert not accepted(b, nxt, trust_now())  # not rolled yet: why 'trust' comes with a roll
        b.roll()
        wait_for_routes([a, b])
        for member in (a, b):
            assert accepted(member, old, trust_now()) and accepted(member, nxt, trust_now())
        # issue: Dynamo's secret switches; GPU tasks rolled now present the next user, the others
        # the old one, and each member rolled in turn (new certificates) accepts both
        rotate("dynamo", "issue")
        assert dynamo_credentials() == nxt
        for member in (a, b):
            member.roll()
            wait_for_routes([a, b])
            for other in (a, b):
                assert accepted(other, old, trust_now()) and accepted(other, nxt, trust_now())
        # a process not rolled and one rolled after 'issue' talk to each other across the route
        assert delivered((a, nxt), (b, old), trust_now()) and delivered((b, old), (a, nxt), trust_now())
        # retire: each member rolled now refuses the old user and accepts the next
        rotate("dynamo", "retire")
        a.roll()
        wait_for_routes([a, b])
        assert not accepted(a, old, trust_now()) and accepted(a, nxt, trust_now())
        assert accepted(b, old, trust_now())  # not rolled yet
        b.roll()
        wait_for_routes([a, b])
        assert not accepted(b, old, trust_now())
        assert delivered((a, nxt), (b, nxt), trust_now())


def test_nats_server_takes_one_cluster_user_so_the_routes_password_is_not_rotated(tmp_path: Path) -> None:
    # The measurement behind keeping the routes' password: two users in a cluster's
    # authorization (what an overlapping rotation would need) are refused at start.
    config = tmp_path / "two-route-users.conf"
    config.write_text(
        f"host: {LOOPBACK}\nport: {free_port()}\n"
        f"cluster {{ name: dynamo, host: {LOOPBACK}, port: {free_port()}, authorization {{ users: [ "
        '{ user: "route", password: "old" }, { user: "route-2", password: "next" } ] } }\n'
    )
    checked = subprocess.run(
        [find_binary("nats-server"), "-c", str(config), "-t"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert checked.returncode != 0
    assert "Cluster authorization does not allow multiple users" in checked.stdout + checked.stderr


def test_the_writer_writes_one_users_entry_per_accepted_user_and_refuses_none(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    infra = credentials.holder_payloads(credentials.make_authority("dynamo", now), [], now)["infra"]
    users = [("dynamo", credentials.new_password()), ("dynamo-2", credentials.new_password())]
    env = writer_environment({**infra, "nats_dynamo_users": credentials.nats_users_text(users)})
    written = run_script(writer_script(str(tmp_path / "two")), env)
    assert written.returncode == 0, written.stderr
    config = (tmp_path / "two" / NATS_CONFIG).read_text()
    assert config.count("{ user:") == 2 and all(f'password: "{p}"' in config for _, p in users)
    # nats-server takes the written config as it is
    checked = subprocess.run(
        [find_binary("nats-server"), "-c", str(tmp_path / "two" / NATS_CONFIG), "-t"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # a list with no user stops the writer (and so the member) instead of a server nobody can use
    refused = run_script(writer_script(str(tmp_path / "none")), {**env, "PLANES_NATS_DYNAMO_USERS": " "})
    assert refused.returncode != 0 and "nats_dynamo_users lists no NATS user" in refused.stderr
    assert not (tmp_path / "none" / NATS_CONFIG).exists()
