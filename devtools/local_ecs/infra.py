"""The infra task (etcd + NATS), or the three members of the tier, for real: their registered
task definitions, run as local processes.

The containers, their commands and environment are read back from ECS (moto), where the
stack registered them from template.yaml: no argument of the harness's own reaches
nats-server or etcd beyond the substitutions `devtools.local_ecs.containers` lists. A flag or
a setting the real server rejects stops the task here as it would on Fargate.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.local_ecs import addresses
from devtools.local_ecs.containers import LocalTaskLayout
from devtools.local_ecs.programs import TINY_MODEL, Toolbox
from devtools.local_ecs.task import LocalTask
from devtools.services import find_binary, http_ok, http_post_json
from dynamo_ecs import aws
from dynamo_ecs.infra import eni_private_ip

START_TIMEOUT_S = 30.0


@dataclass
class LocalInfra:
    """A running infra task: where its etcd, NATS and NATS monitor answer on loopback."""

    task: LocalTask
    private_ip: str  # as ECS reports it (10.x)
    address: str  # where it listens here (127.x)
    etcd_port: int = 2379
    nats_port: int = 4222
    monitor_port: int = 8222

    @property
    def etcd_url(self) -> str:
        return f"http://{self.address}:{self.etcd_port}"

    @property
    def nats_url(self) -> str:
        return f"nats://{self.address}:{self.nats_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.address}:{self.monitor_port}"

    def ready(self) -> bool:
        return http_ok(f"{self.etcd_url}/health") and http_ok(
            f"{self.monitor_url}/healthz?js-enabled-only=true"
        )

    def stop(self, reason: str = "Task stopped") -> None:
        self.task.stop(reason)


def start_infra(
    ecs: Any, cluster: str, task_arn: str, workdir: Path, toolbox: Toolbox | None = None
) -> LocalInfra:
    """Start the processes of the infra task ``task_arn`` and wait until etcd and NATS answer."""
    described = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    definition = ecs.describe_task_definition(taskDefinition=described["taskDefinitionArn"])["taskDefinition"]
    private_ip = eni_private_ip(described)
    if not private_ip:
        raise RuntimeError(f"infra task {task_arn} has no private IPv4 address")
    address = addresses.to_loopback(private_ip)
    layout = LocalTaskLayout(
        root=workdir / f"infra-{task_arn.rsplit('/', 1)[-1]}",
        address=address,
        toolbox=toolbox or Toolbox(),
        model_dir=TINY_MODEL,
    )
    task = LocalTask(task_arn, layout)
    try:
        task.start(definition)
        infra = LocalInfra(task, private_ip, address)
        task.wait_until(infra.ready, START_TIMEOUT_S, f"infra task at {address}")
    except Exception:
        task.stop("Task failed to start")
        raise
    return infra


@contextlib.contextmanager
def running_infra(ecs: Any, cluster: str, task_arn: str, workdir: Path) -> Iterator[LocalInfra]:
    infra = start_infra(ecs, cluster, task_arn, workdir)
    try:
        yield infra
    finally:
        infra.stop()


# --- The three-member tier (InfraMembers 3, docs/infra-tier.md) ---------------------------------


@dataclass
class LocalMember:
    """Member ``index``'s running task, listening where its DNS name points (Cloud Map's stand-in)."""

    index: int
    name: str
    address: str
    task_arn: str
    task: LocalTask
    started_at: float
    planes: PlanesClient | None = None  # the planes on: Dynamo's client identity (`planes_client`)

    @property
    def etcd_url(self) -> str:
        return f"{'https' if self.planes else 'http'}://{self.address}:2379"

    @property
    def nats_url(self) -> str:
        return f"nats://{self.address}:4222"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.address}:8222"

    def ready(self) -> bool:
        context = self.planes.context if self.planes else None
        return http_ok(f"{self.etcd_url}/health", context=context) and http_ok(
            f"{self.monitor_url}/healthz?js-enabled-only=true"
        )


@dataclass(frozen=True)
class PlanesClient:
    """A holder's identity on the planes, as its tasks get it: a TLS context for etcd's HTTP
    endpoints and etcdctl with its certificate (etcd's JSON gateway talks to etcd under the
    member's own certificate, so with auth on it is no client's identity)."""

    context: ssl.SSLContext
    directory: Path

    def etcdctl(self, url: str, *args: str) -> subprocess.CompletedProcess[str]:
        files = {k: str(self.directory / f"{k}.pem") for k in ("ca_bundle", "client_cert", "client_key")}
        words = [
            find_binary("etcdctl"),
            f"--endpoints={url}",
            "--dial-timeout=2s",
            "--command-timeout=3s",
            f"--cacert={files['ca_bundle']}",
            f"--cert={files['client_cert']}",
            f"--key={files['client_key']}",
        ]
        return subprocess.run([*words, *args], capture_output=True, text=True, timeout=20, check=False)


def planes_client(secret_arn: str, workdir: Path) -> PlanesClient:
    """The identity of the holder whose secret is ``secret_arn`` (its CA bundle, client
    certificate and key)."""
    payload = json.loads(aws.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
    directory = workdir / "planes-client"
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("ca_bundle", "client_cert", "client_key"):
        (directory / f"{name}.pem").write_text(payload[name])
        (directory / f"{name}.pem").chmod(0o600)
    context = ssl.create_default_context(cafile=str(directory / "ca_bundle.pem"))
    context.load_cert_chain(str(directory / "client_cert.pem"), str(directory / "client_key.pem"))
    return PlanesClient(context, directory)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class LocalTier:
    """The three member services of a stack on moto, each run from its registered task definition.

    ECS's part is played as the service scheduler would: a member's task is started with
    RunTask (``group=service:<member service>``) in the member's own subnet, and a stopped
    member's service gets a new task from the same task definition. The processes are the
    task definition's own (`LocalTaskLayout.plan`); each member's DNS name is a fixed loopback
    address (`addresses.name_address`) where the member's current task listens.
    """

    ecs: Any
    cluster: str
    services: list[str]  # member k's service
    definitions: list[str]  # member k's task definition (as moto can place it)
    subnets: list[str]  # member k's subnet
    security_group: str
    names: dict[str, str]  # DNS name -> loopback address, member k's k-th
    workdir: Path
    toolbox: Toolbox = field(default_factory=Toolbox)
    members: dict[int, LocalMember] = field(default_factory=dict)
    stopped: list[tuple[int, str, str]] = field(default_factory=list)  # (member, task, reason)
    planes: PlanesClient | None = None  # the planes on: how the harness talks to etcd (Dynamo's identity)

    @property
    def member_names(self) -> list[str]:
        return list(self.names)

    def start(self, indexes: Iterable[int] | None = None, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the members' tasks at once (as ECS starts three services) and wait until all serve."""
        indexes = list(range(len(self.services)) if indexes is None else indexes)
        errors: list[BaseException] = []

        def start_one(index: int) -> None:
            try:
                self.start_member(index, wait=False)
            except BaseException as error:  # reported below, after every start has returned
                errors.append(error)

        threads = [threading.Thread(target=start_one, args=(k,)) for k in indexes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        for index in indexes:
            member = self.members[index]
            member.task.wait_until(member.ready, timeout_s, f"infra member {index} at {member.address}")

    def start_member(self, index: int, wait: bool = True) -> LocalMember:
        """A new task for member ``index``'s service, started for real; returns once it serves."""
        if index in self.members:
            raise RuntimeError(f"infra member {index} already runs task {self.members[index].task_arn}")
        service = self.services[index]
        arn = self.ecs.run_task(
            cluster=self.cluster,
            taskDefinition=self.definitions[index],
            launchType="FARGATE",
            group=f"service:{service}",
            startedBy=f"ecs-svc/{service}",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": [self.subnets[index]],
                    "securityGroups": [self.security_group],
                    "assignPublicIp": "DISABLED",
                }
            },
        )["tasks"][0]["taskArn"]
        definition = self.ecs.describe_task_definition(taskDefinition=self.definitions[index])[
            "taskDefinition"
        ]
        name = self.member_names[index]
        layout = LocalTaskLayout(
            root=self.workdir / f"infra-{index}-{arn.rsplit('/', 1)[-1]}",
            address=self.names[name],
            toolbox=self.toolbox,
            model_dir=TINY_MODEL,
            names=dict(self.names),
        )
        task = LocalTask(arn, layout)
        member = LocalMember(index, name, self.names[name], arn, task, time.monotonic(), self.planes)
        self.members[index] = member
        try:
            task.start(definition)
            if wait:
                task.wait_until(member.ready, START_TIMEOUT_S, f"infra member {index} at {member.address}")
        except Exception as error:
            self._stopped(index, f"Task failed to start: {error}"[:1024])
            raise
        return member

    def stop_member(self, index: int, reason: str = "Task stopped by the test") -> str:
        """Member ``index``'s task stops (its processes first, then ECS's record); its ARN."""
        member = self.members[index]
        self._stopped(index, reason)
        return member.task_arn

    def _stopped(self, index: int, reason: str) -> None:
        member = self.members.pop(index)
        member.task.stop(reason)
        self.ecs.stop_task(cluster=self.cluster, task=member.task_arn, reason=reason)
        self.stopped.append((index, member.task_arn, reason))

    def replace_member(self, index: int, reason: str = "Task stopped by the test") -> LocalMember:
        """Fargate replaces member ``index``'s task: the old one stops first (MaximumPercent 100)."""
        self.stop_member(index, reason)
        return self.start_member(index)

    def etcd_members(self) -> list[dict[str, Any]]:
        """The etcd membership as a live member reports it (etcdctl with the planes on, else etcd's
        JSON gateway); a member's ``ID`` as a string either way."""
        for member in self.members.values():
            try:
                if self.planes:
                    listed = self.planes.etcdctl(member.etcd_url, "member", "list", "-w", "json")
                    if listed.returncode != 0:
                        continue
                    answer = json.loads(listed.stdout)
                else:
                    answer = json.loads(
                        http_post_json(f"{member.etcd_url}/v3/cluster/member/list", {}, timeout=3)
                    )
            except OSError:
                continue
            return [{**m, "ID": str(m["ID"])} for m in answer.get("members", [])]
        raise RuntimeError("no infra member answers")

    def member_id(self, index: int) -> str | None:
        """Member ``index``'s etcd member ID as it reports it (``endpoint status``: needs no quorum)."""
        url = self.members[index].etcd_url
        if self.planes:
            done = self.planes.etcdctl(url, "endpoint", "status", "-w", "json")
            if done.returncode != 0:
                return None
            return str(json.loads(done.stdout)[0]["Status"]["header"]["member_id"])
        try:
            answer = json.loads(http_post_json(f"{url}/v3/maintenance/status", {}, timeout=3))
        except OSError:
            return None
        return str(answer["header"]["member_id"])

    def put(self, url: str, key: str, value: str) -> None:
        """Write ``key`` through the member at ``url`` (Dynamo's identity with the planes on)."""
        if self.planes:
            done = self.planes.etcdctl(url, "put", key, value)
            if done.returncode != 0:
                raise OSError(f"etcdctl put {key} at {url}: {done.stderr.strip()}")
        else:
            http_post_json(f"{url}/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def value_at(self, url: str, key: str) -> str | None:
        """``key``'s value as the member at ``url`` serves it; None when absent or unanswered."""
        try:
            if self.planes:
                read = self.planes.etcdctl(url, "get", key, "--print-value-only")
                return read.stdout.rstrip("\n") or None if read.returncode == 0 else None
            answer = json.loads(http_post_json(f"{url}/v3/kv/range", {"key": _b64(key)}, timeout=3))
        except OSError:
            return None
        kvs = answer.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def etcd_urls(self) -> str:
        """``ETCD_ENDPOINTS`` as the operator renders it for this tier (the members' names, mapped)."""
        scheme = "https" if self.planes else "http"
        return ",".join(f"{scheme}://{address}:2379" for address in self.names.values())

    def stop(self) -> None:
        for index in list(self.members):
            self.members.pop(index).task.stop("Tier stopped")


@dataclass(frozen=True)
class StrangerAttempts:
    """What the running tier answered clients without the planes' credentials."""

    etcd_write: str  # etcdctl's answer to a put over TLS without a client certificate
    etcd_write_accepted: bool
    etcd_value_kept: bool  # the key still holds what Dynamo's identity wrote
    nats_connect: str  # NATS's answer to a TLS connection without user and password
    nats_connect_accepted: bool


def stranger_attempts(tier: LocalTier, index: int = 0, key: str = "v1/demo/probe") -> StrangerAttempts:
    """Against member ``index`` of a tier with the planes on: Dynamo's identity writes ``key``
    (the control), then one etcd write without a client certificate (the stack's CA trusted)
    and one NATS connection over TLS without a password."""
    from devtools.planes import etcd_put_without_certificate, nats_answer

    if tier.planes is None:
        raise RuntimeError("the tier runs without the planes: nothing to refuse")
    member = tier.members[index]
    tier.put(member.etcd_url, key, "written-by-dynamo")
    ca_file = tier.planes.directory / "ca_bundle.pem"
    attempt = etcd_put_without_certificate(member.etcd_url, ca_file, key, "written-by-a-stranger")
    answer = nats_answer(member.address, ssl.create_default_context(cafile=str(ca_file)), {})
    said = (attempt.stderr or attempt.stdout).strip().splitlines()
    return StrangerAttempts(
        etcd_write=said[-1] if said else "",
        etcd_write_accepted=attempt.returncode == 0,
        etcd_value_kept=tier.value_at(member.etcd_url, key) == "written-by-dynamo",
        nats_connect=answer.strip(),
        nats_connect_accepted=answer.startswith("PONG"),
    )


def member_names_of(outputs: Mapping[str, str]) -> dict[str, str]:
    """The stack's members' DNS names (its ``InfraMemberNames`` output), each with its stand-in address."""
    return {name: addresses.name_address(k) for k, name in enumerate(outputs["InfraMemberNames"].split(","))}


def local_tier(deployed: Any, workdir: Path) -> LocalTier:
    """The three-member tier of ``deployed`` (a `devtools.moto_stack.DeployedStack`), not started."""
    from devtools.moto_stack import infra_service_name, placeable_infra_definition

    outputs = deployed.outputs
    subnets = deployed.parameters["TaskSubnetIds"].split(",")
    names = member_names_of(outputs)
    dynamo_secret = (
        deployed.planes.get("DynamoSecretArn")
        if deployed.parameters.get("InfraMembers", "3") == "3"
        else None
    )
    return LocalTier(
        ecs=aws.client("ecs"),
        cluster=outputs["InfraClusterName"],
        services=[infra_service_name(outputs, k) for k in range(len(names))],
        definitions=[placeable_infra_definition(deployed.full, outputs, k) for k in range(len(names))],
        # member k in the k-th subnet; with two, the third in the first (as template.yaml has it)
        subnets=[[*subnets, subnets[0]][k] for k in range(len(names))],
        security_group=deployed.physical["InfraSecurityGroup"],
        names=names,
        workdir=workdir,
        planes=planes_client(dynamo_secret, workdir) if dynamo_secret else None,
    )


@contextlib.contextmanager
def running_tier(deployed: Any, workdir: Path) -> Iterator[LocalTier]:
    tier = local_tier(deployed, workdir)
    try:
        tier.start()
        yield tier
    finally:
        tier.stop()
