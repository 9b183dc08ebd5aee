"""The infra planes with TLS and authentication on loopback: the real etcd 3.5, etcdctl and
nats-server 2.11 started from `dynamo_ecs.planes.infra_settings`' own texts.

`secured_infra` runs the busybox writer's script with the infra secret's fields in its
environment (as ECS would hand them over), starts etcd with the TLS environment, runs the auth
set-up script with the real etcdctl, and starts nats-server on the written config. Only
addresses, ports and the files' directory differ from the task definition.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from devtools.services import LOOPBACK, ManagedProcess, ServiceStartError, find_binary, free_port, http_ok
from dynamo_ecs.planes import credentials
from dynamo_ecs.planes.infra_settings import (
    NATS_CONFIG,
    WRITER_SECRETS,
    etcd_auth_script,
    etcd_tls_config_lines,
    etcd_tls_environment,
    writer_script,
)


def writer_environment(infra_payload: dict[str, str]) -> dict[str, str]:
    """The writer container's environment: each ECS secret resolved from the infra secret's JSON."""
    return {variable: infra_payload[key] for variable, key in WRITER_SECRETS.items()}


def run_script(script: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class SecuredInfra:
    directory: Path
    etcd_port: int
    nats_port: int
    monitor_port: int
    cluster_port: int
    host: str = LOOPBACK
    peer_port: int = 0
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The servers' name for clients: ``localhost`` (a DNS name) on 127.0.0.1, else the address."""
        return "localhost" if self.host == LOOPBACK else self.host

    @property
    def etcd_url(self) -> str:
        return f"https://{self.name}:{self.etcd_port}"

    @property
    def nats_url(self) -> str:
        return f"tls://{self.name}:{self.nats_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"


def _etcd_ready(directory: Path, url: str) -> bool:
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    context.load_cert_chain(str(directory / "root.pem"), str(directory / "root-key.pem"))
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1, context=context) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def secured_infra(
    workdir: Path,
    infra_payload: dict[str, str],
    *,
    cluster_name: str | None = None,
    routes: list[str] | None = None,
    with_etcd: bool = True,
    cluster_port: int | None = None,
    etcd_config_file: bool = False,
    host: str = LOOPBACK,
    etcd_port: int | None = None,
    nats_port: int | None = None,
) -> Iterator[SecuredInfra]:
    directory = workdir / "planes"
    infra = SecuredInfra(
        directory,
        etcd_port or free_port(),
        nats_port or free_port(),
        free_port(),
        cluster_port or free_port(),
        host,
    )
    written = run_script(
        writer_script(
            str(directory),
            host=host,
            client_port=infra.nats_port,
            monitor_port=infra.monitor_port,
            cluster_name=cluster_name,
            cluster_port=infra.cluster_port,
            server_name=f"node-{infra.nats_port}" if cluster_name else None,
            routes=routes,
            jetstream_dir=str(workdir / "jetstream"),
        ),
        writer_environment(infra_payload),
    )
    if written.returncode != 0:
        raise ServiceStartError(f"the writer script failed: {written.stderr}")
    infra.peer_port = peer_port = free_port()
    client_url, peer_url = f"https://{host}:{infra.etcd_port}", f"https://{LOOPBACK}:{peer_port}"
    etcd_env = {
        "ETCD_NAME": "infra",
        "ETCD_DATA_DIR": str(workdir / "etcd-data"),
        "ETCD_LISTEN_CLIENT_URLS": client_url,
        "ETCD_ADVERTISE_CLIENT_URLS": client_url,
        "ETCD_LISTEN_PEER_URLS": peer_url,
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": peer_url,
        "ETCD_INITIAL_CLUSTER": f"infra={peer_url}",
        **etcd_tls_environment(str(directory)),
    }
    argv = [find_binary("etcd")]
    if etcd_config_file:
        # as the three-member tier's members start: every setting in one YAML file
        config = workdir / "etcd.conf.yml"
        plain = {k: v for k, v in etcd_env.items() if k not in etcd_tls_environment(str(directory))}
        lines = [f"{k.removeprefix('ETCD_').lower().replace('_', '-')}: {v}" for k, v in plain.items()]
        config.write_text("\n".join([*lines, *etcd_tls_config_lines(str(directory))]) + "\n")
        argv, etcd_env = [*argv, "--config-file", str(config)], {}
    etcd = ManagedProcess(
        "etcd",
        argv,
        ready=lambda: _etcd_ready(directory, infra.etcd_url),
        env=etcd_env,
        log_path=workdir / "etcd.log",
    )
    nats = ManagedProcess(
        "nats-server",
        [find_binary("nats-server"), "--config", str(directory / NATS_CONFIG)],
        ready=lambda: http_ok(f"{infra.monitor_url}/varz"),  # /healthz waits for a JetStream cluster
        log_path=workdir / "nats.log",
    )
    try:
        if not with_etcd:
            nats.start()
            infra.processes.append(nats)
            yield infra
            return
        etcd.start()
        infra.processes.append(etcd)
        auth = run_script(
            etcd_auth_script(str(directory), etcdctl=find_binary("etcdctl"), endpoint=client_url, wait_s=20),
            {},
        )
        if auth.returncode != 0:
            raise ServiceStartError(f"the etcd auth script failed: {auth.stdout} {auth.stderr}")
        nats.start()
        infra.processes.append(nats)
        yield infra
    finally:
        for process in reversed(infra.processes):
            process.stop()


def dynamo_environment(
    infra: SecuredInfra, dynamo_payload: dict[str, str], ca_path: Path, base: dict[str, str] | None = None
) -> dict[str, str]:
    """A Dynamo process's environment as a GPU task gets it: ``base`` (the spec's values), the
    planes' URLs, each ECS secret resolved from the Dynamo holder's secret, the CA file's path."""
    from dynamo_ecs.planes.gpu_credentials import DYNAMO_SECRETS

    env = dict(base or {})
    env |= {name: dynamo_payload[key] for name, key in DYNAMO_SECRETS.items()}
    env |= {
        "ETCD_ENDPOINTS": infra.etcd_url,
        "NATS_SERVER": infra.nats_url,
        "NATS_TLS_CA_CERT_PATH": str(ca_path),
    }
    return env


def write_ca_like_the_task(directory: Path, dynamo_payload: dict[str, str]) -> Path:
    """Run the GPU task's CA writer command (its path moved into ``directory``)."""
    from dynamo_ecs.planes.gpu_credentials import CA_DIR, CA_WRITER_VARIABLE, add_plane_credentials

    rendered = add_plane_credentials({"containerDefinitions": []}, "arn:x", "busybox")
    writer = rendered["containerDefinitions"][-1]
    script = writer["command"][0].replace(CA_DIR, str(directory))
    directory.mkdir(parents=True, exist_ok=True)  # ECS mounts the task volume there
    done = run_script(script, {CA_WRITER_VARIABLE: dynamo_payload["ca_bundle"]})
    if done.returncode != 0:
        raise ServiceStartError(f"the CA writer failed: {done.stderr}")
    return directory / "ca.pem"


# --- clients of the planes, right and wrong (the tests and bench_planes) ---------------------


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


@contextlib.contextmanager
def planes_on_loopback(workdir: Path, *, etcd_config_file: bool = False) -> Iterator[Planes]:
    """A fresh CA and holders, the secured infra on loopback, and a stranger: another CA's
    certificate with Dynamo's CN."""
    now = dt.datetime.now(dt.UTC)
    authority = credentials.make_authority("dynamo", now)
    payloads = credentials.holder_payloads(authority, ["infra-0.dynamo-infra.internal"], now)
    payloads["stranger"] = credentials.holder_payloads(credentials.make_authority("other", now), [], now)[
        "dynamo"
    ]
    files = workdir / "clients"
    files.mkdir(parents=True)
    with secured_infra(workdir, payloads["infra"], etcd_config_file=etcd_config_file) as infra:
        yield Planes(infra, payloads, files)


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


def etcd_attempt(planes: Planes, case: EtcdAttempt) -> bool:
    """Whether etcd accepted ``case``'s write."""
    url = case.url.format(port=planes.infra.etcd_port) if case.url else None
    attempt = etcdctl(planes, "put", case.key, "fake", url=url, holder=case.holder, extra=case.extra)
    return attempt.returncode == 0


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


WRONG_NATS = {
    "no credentials": ("tls", None, None),
    "a wrong password": ("tls", "dynamo", "not-the-password"),
    "the routes' credentials as a client": ("tls", "route", "ROUTE"),
    "no TLS, right credentials": ("plain", "dynamo", "RIGHT"),
}


RIGHT_NATS = ("tls", "dynamo", "RIGHT")


def nats_attempt(planes: Planes, case: tuple[str, str | None, str | None]) -> tuple[bool, bool]:
    """(the client published, Dynamo's subscriber received it) for ``case`` (transport, user, password)."""
    transport, user, password = case
    password = {
        "ROUTE": planes.payloads["infra"]["nats_route_password"],
        "RIGHT": planes.payloads["dynamo"]["nats_password"],
    }.get(password or "", password)
    url = planes.infra.nats_url if transport == "tls" else f"nats://localhost:{planes.infra.nats_port}"
    tls = tls_context(planes) if transport == "tls" else None
    return asyncio.run(_publish_seen(planes, url, tls, user, password))


def nats_answer(
    address: str, context: ssl.SSLContext | None, connect: dict[str, object], port: int = 4222
) -> str:
    """What the NATS server at ``address`` says to CONNECT ``connect`` then PING, over TLS with
    ``context`` (None: plain): ``PONG`` when served, ``-ERR ...`` or ``closed: ...`` when refused."""
    raw = socket.create_connection((address, port), timeout=5)
    try:
        info = raw.recv(4096).decode()
        if not info.startswith("INFO "):
            return f"closed: no INFO ({info[:80]!r})"
        stream: socket.socket = context.wrap_socket(raw, server_hostname=address) if context else raw
        stream.sendall(f"CONNECT {json.dumps({'verbose': False, **connect})}\r\nPING\r\n".encode())
        answer = b""
        while b"PONG" not in answer and b"-ERR" not in answer:
            chunk = stream.recv(4096)
            if not chunk:
                break  # closed by the server
            answer += chunk
        return answer.decode(errors="replace")
    except OSError as error:
        return f"closed: {error}"
    finally:
        raw.close()


def etcd_put_without_certificate(
    url: str, ca_file: Path, key: str, value: str
) -> subprocess.CompletedProcess[str]:
    """etcdctl ``put`` over TLS that trusts the stack's CA but presents no client certificate."""
    words = [
        find_binary("etcdctl"),
        f"--endpoints={url}",
        f"--cacert={ca_file}",
        "--dial-timeout=2s",
        "--command-timeout=3s",
        "put",
        key,
        value,
    ]
    return subprocess.run(words, capture_output=True, text=True, timeout=20, check=False)


# --- cluster planes: NATS routes and etcd peers ----------------------------------------------


def routes_of(node: SecuredInfra) -> int:
    with urllib.request.urlopen(f"{node.monitor_url}/routez", timeout=2) as response:
        return int(json.loads(response.read())["num_routes"])


def routes_within(node: SecuredInfra, within_s: float) -> int:
    """The node's route connections once any appear, or 0 after ``within_s`` (2.11 pools
    several connections per peer)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and routes_of(node) == 0:
        time.sleep(0.2)
    return routes_of(node)


def rogue_node(workdir: Path, config: str) -> ManagedProcess:
    """A nats-server routing to the tier with the cluster ``config`` given (not the task's)."""
    workdir.mkdir(parents=True, exist_ok=True)
    monitor = free_port()
    (workdir / "rogue.conf").write_text(
        f"host: {LOOPBACK}\nport: {free_port()}\nhttp_port: {monitor}\n"
        f"cluster {{ name: dynamo, host: {LOOPBACK}, port: {free_port()}, {config} }}\n"
    )
    return ManagedProcess(
        "rogue",
        [find_binary("nats-server"), "--config", str(workdir / "rogue.conf")],
        ready=lambda: http_ok(f"http://{LOOPBACK}:{monitor}/healthz"),
        log_path=workdir / "rogue.log",
    )


def rogue_route_configs(
    workdir: Path, payloads: dict[str, dict[str, str]], seed_route: str
) -> dict[str, str]:
    """Wrong ways to route to the tier: the routes' password without the stack's certificate;
    the stack's CA and Dynamo's certificate without the password."""
    infra = payloads["infra"]
    tls_dir = workdir / "dynamo-tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    for name in ("client_cert", "client_key", "ca_bundle"):
        (tls_dir / f"{name}.pem").write_text(payloads["dynamo"][name])
    return {
        "the routes' password, no certificate": (
            f'routes: [ "nats-route://route:{infra["nats_route_password"]}@{seed_route}" ]'
        ),
        "Dynamo's certificate, no routes' password": (
            f'tls {{ cert_file: "{tls_dir}/client_cert.pem", key_file: "{tls_dir}/client_key.pem", '
            f'ca_file: "{tls_dir}/ca_bundle.pem" }}, routes: [ "nats-route://{seed_route}" ]'
        ),
    }


def rogue_route_joins(workdir: Path, seed: SecuredInfra, config: str, within_s: float = 4) -> bool:
    rogue = rogue_node(workdir, config)
    rogue.start()
    try:
        return routes_within(seed, within_s=within_s) > 0
    finally:
        rogue.stop()


def start_peer(planes: Planes, workdir: Path, common_name: str) -> ManagedProcess:
    """Root adds a member; a process with a certificate of the stack's CA and ``common_name``
    (one that could serve: the members' names) starts as it, with the task's TLS settings."""
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
    if added.returncode != 0:
        raise ServiceStartError(f"member add failed: {added.stderr}")
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
    return process


def peer_started(planes: Planes, within_s: float = 15) -> bool:
    """Whether every listed member has started (the added one has a name), as the first sees it."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        listed = etcdctl(planes, "member", "list", "-w", "json", holder="root")
        if listed.returncode == 0 and all(m.get("name") for m in json.loads(listed.stdout)["members"]):
            return True
        time.sleep(0.5)
    return False
