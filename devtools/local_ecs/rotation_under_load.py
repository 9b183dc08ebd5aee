"""The planes' documented rotation (docs/security-planes.md, "Rotation without losing a request")
run end to end under load, on real processes.

On a `TierDeployment` (three members, the planes on, the stack's secrets on moto's Secrets
Manager as the credential maker made them), with a bounded load on the frontends (3 requests/s),
each step of ``trust``, ``issue``, ``retire`` is:

1. `dynamo_ecs.planes.rotation.rotate` against Secrets Manager (new secret versions);
2. the infra members rolled one at a time as their services do it (``MaximumPercent`` 100): member
   k's task stops, its service starts a new task from the same task definition after
   ``member_start_delay_s`` (Fargate's placement and start, compressed); the new task resolves
   the new secret version at start and rejoins; the next member only once this one is a started
   etcd member (every member the GPU task definitions name is) and routes to the other two NATS
   nodes;
3. both GPU services rolled as ECS does for a new deployment: UpdateService with
   ``forceNewDeployment``; the local runner starts new tasks (which resolve the new version),
   waits until they are healthy (the target group's check for the frontend, ECS's wait for the
   prefill service, both compressed), then stops the old ones through the load balancer's
   deregistration delay (`devtools.local_ecs.runner`).

Counted: requests and failures, each part's duration, the Dynamo processes that exited outside
a roll (in a task no roll was stopping), the fewest frontend targets and healthy frontend tasks
seen while it ran. Evidence the rotation happened: after ``retire`` every member serves a
certificate issued by the new CA and verified with the new CA alone, every Dynamo process holds
a client certificate of the new CA and trusts that CA alone, and the running etcd refuses the
client certificate Dynamo held before the rotation (the control: the new one is accepted).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from devtools.local_ecs.client import get
from devtools.local_ecs.health import TargetGroupCheck
from devtools.local_ecs.infra import PlanesClient, planes_client
from devtools.local_ecs.load import LoadRun
from devtools.local_ecs.member_loss import live_members_named, task_dynamo_pids
from devtools.local_ecs.runner import GpuTask
from devtools.local_ecs.tier_deployment import TierDeployment
from dynamo_ecs import aws
from dynamo_ecs.config import SERVICE_ROLES
from dynamo_ecs.planes.rotation import STEPS, rotate
from dynamo_ecs.planes.secrets_store import secret_name

RATE_PER_S = 3.0
MAX_TOKENS = 16
PROMPT = "hello world the model is a token"
# ECS's and the load balancer's waits, compressed (what they are on AWS in brackets):
MEMBER_START_DELAY_S = 2.0  # a member's replacement task placed and started (Fargate: tens of seconds)
TARGET_CHECK_INTERVAL_S = 1  # the target group's check interval (10 s)
HEALTHY_AFTER_S = 5.0  # ECS's wait before a task without health check counts as healthy (40 s)
DEREGISTRATION_DELAY_S = 3.0  # the target group's deregistration delay (120 s)
MEMBER_JOIN_TIMEOUT_S = 60.0
GPU_ROLL_TIMEOUT_S = 180.0
DYNAMO_CONTAINER_ENV = ("ETCD_AUTH_CA", "ETCD_AUTH_CLIENT_CERT")


def rolling_update_settings() -> dict[str, Any]:
    """`tier_deployment` keywords for a runner that models the load balancer's check and ECS's
    count of healthy tasks (compressed): what a rolling update waits for."""
    check = dataclasses.replace(TargetGroupCheck.from_template(), interval_s=TARGET_CHECK_INTERVAL_S)
    return {
        "target_check": check,
        "healthy_after_s": HEALTHY_AFTER_S,
        "deregistration_delay_s": DEREGISTRATION_DELAY_S,
    }


@dataclass
class StepTimes:
    step: str
    rotate_s: float
    members_s: list[float]  # member k's roll: its stop to its rejoining
    gpu_roll_s: float  # UpdateService to both services running only new, healthy tasks


@dataclass
class RotationEvidence:
    member_issuers_new: list[bool]  # member k serves a certificate of the new CA (verified with it alone)
    dynamo_clients_new: list[
        bool
    ]  # each Dynamo container: a client certificate of the new CA, trusting it alone
    old_client_of_old_ca: bool  # Dynamo's certificate from before the rotation is not the new CA's
    old_client_refused: bool  # ... and the running etcd refuses it
    new_client_accepted: bool  # the control: the current certificate, accepted


@dataclass
class RotationResult:
    requests: int
    failed: int
    statuses: dict[int, int]
    steps: list[StepTimes]
    duration_s: float
    unplanned_exits: list[str]  # "pid (task): argv" of Dynamo processes that exited outside a roll
    gpu_tasks_started: int
    min_frontend_targets: int
    min_healthy_frontends: int
    evidence: RotationEvidence | None = None
    failures: list[str] = field(default_factory=list)  # the failed requests: "status at +s, target"


class DynamoExitWatch:
    """Notices each Dynamo process that goes away, and whether a roll was stopping its task."""

    def __init__(self, deployment: TierDeployment) -> None:
        self.deployment = deployment
        self.seen: dict[int, tuple[str, str]] = {}  # pid -> (task ARN, role)
        self.unplanned: list[str] = []
        self.poll()

    def poll(self) -> None:
        runner = self.deployment.runner
        terminated = {s.task.arn for s in runner.stopping if s.terminated}
        replaced = {s.arn for s in runner.stopped if s.reason.startswith("Scaling activity")}
        tasks: list[GpuTask] = [*runner.tasks, *(s.task for s in runner.stopping)]
        live = {pid: (task.arn, task.role) for task in tasks for pid in task_dynamo_pids(task)}
        for pid, (arn, role) in list(self.seen.items()):
            if pid in live:
                continue
            del self.seen[pid]
            if arn not in terminated | replaced:
                self.unplanned.append(f"{pid} ({role} task {arn.rsplit('/', 1)[-1]})")
        self.seen.update(live)


@dataclass
class _Run:
    deployment: TierDeployment
    watch: DynamoExitWatch
    targets: list[str]
    min_targets: int = 1_000
    min_healthy: int = 1_000

    def tick(self, seconds: float = 0.0) -> None:
        end = time.monotonic() + seconds
        while True:
            runner = self.deployment.runner
            runner.tick()
            self.targets[:] = self.deployment.frontend_urls()
            self.min_targets = min(self.min_targets, len(self.targets))
            healthy = [t for t in runner.running("frontend") if runner.healthy(t)]
            self.min_healthy = min(self.min_healthy, len(healthy))
            self.watch.poll()
            if time.monotonic() >= end:
                return
            time.sleep(0.2)


def nats_routes(monitor_url: str) -> set[str]:
    """The NATS servers a node routes to (its monitor's /routez)."""
    status, body = get(f"{monitor_url}/routez", timeout_s=3)
    if status != 200:
        return set()
    return {str(r.get("remote_name") or r.get("remote_id")) for r in json.loads(body).get("routes") or []}


def refresh_harness_identity(deployment: TierDeployment, workdir: Path) -> None:
    """The harness talks to etcd as a freshly started Dynamo task would: the current version of
    Dynamo's secret (after ``issue`` a member serves a certificate only the new bundle verifies)."""
    tier = deployment.tier
    tier.planes = planes_client(deployment.deployed.planes["DynamoSecretArn"], workdir)
    for member in tier.members.values():
        member.planes = tier.planes


def roll_member(run: _Run, index: int, start_delay_s: float) -> float:
    """Member ``index``'s service replaces its task (old stops first); seconds until it rejoined."""
    tier = run.deployment.tier
    stopped_at = time.monotonic()
    tier.stop_member(index, "Task stopped: rolled for a rotation of the planes' credentials")
    run.tick(start_delay_s)
    tier.start_member(index)
    deadline = time.monotonic() + MEMBER_JOIN_TIMEOUT_S
    others = len(tier.names) - 1
    while time.monotonic() < deadline:
        if live_members_named(run.deployment) and len(nats_routes(tier.members[index].monitor_url)) >= others:
            return time.monotonic() - stopped_at
        run.tick(0.2)
    raise RuntimeError(f"infra member {index} did not rejoin within {MEMBER_JOIN_TIMEOUT_S:.0f} s")


def roll_gpu_services(run: _Run) -> float:
    """UpdateService with forceNewDeployment on both GPU services; seconds until both completed."""
    deployment = run.deployment
    started = time.monotonic()
    for role in SERVICE_ROLES:
        deployment.world.ecs.update_service(
            cluster=deployment.config.gpu_cluster,
            service=deployment.config.service(role).service,
            forceNewDeployment=True,
        )
    deadline = started + GPU_ROLL_TIMEOUT_S
    while time.monotonic() < deadline:
        run.tick(0.2)
        if all(deployment.runner.rollout_complete(role) for role in SERVICE_ROLES):
            return time.monotonic() - started
    raise RuntimeError(
        f"the GPU services' deployments did not complete within {GPU_ROLL_TIMEOUT_S:.0f} s; "
        f"stopped: {[(s.role, s.reason) for s in deployment.runner.stopped]}"
    )


def wait_steady(run: _Run, timeout_s: float = 60.0) -> None:
    """Until both GPU services run their desired tasks, all healthy (the procedure starts from there)."""
    deadline = time.monotonic() + timeout_s
    while not all(run.deployment.runner.rollout_complete(role) for role in SERVICE_ROLES):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the GPU services were not steady within {timeout_s:.0f} s")
        run.tick(0.2)
    run.min_targets = run.min_healthy = 1_000  # counted from here


def rotate_under_load(
    deployment: TierDeployment,
    workdir: Path,
    model: str = "Qwen/Qwen3-0.6B",
    warm_up_s: float = 5.0,
    after_s: float = 5.0,
    member_start_delay_s: float = MEMBER_START_DELAY_S,
) -> RotationResult:
    """The whole procedure (every step, every roll) under a bounded load; see the module docstring."""
    runner = deployment.runner
    before = _dynamo_payload(deployment)
    started_before = runner.started_count
    run = _Run(deployment, DynamoExitWatch(deployment), deployment.frontend_urls())
    wait_steady(run)
    load = LoadRun(lambda: list(run.targets), model, RATE_PER_S, PROMPT, MAX_TOKENS)
    load.start(600.0)
    steps: list[StepTimes] = []
    began = time.monotonic()
    try:
        run.tick(warm_up_s)
        for step in STEPS:
            at = time.monotonic()
            rotate(deployment.deployed.parameters["DeploymentName"], step)
            rotate_s = time.monotonic() - at
            refresh_harness_identity(deployment, workdir / f"harness-{step}")
            members = [roll_member(run, k, member_start_delay_s) for k in range(len(deployment.tier.names))]
            steps.append(StepTimes(step, rotate_s, members, roll_gpu_services(run)))
        duration_s = time.monotonic() - began
        run.tick(after_s)
    finally:
        load.stop()
    statuses: dict[int, int] = {}
    for outcome in load.outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    failures = [
        f"{o.status} at {o.sent_at:.1f} to {o.target} after {o.seconds:.1f} s"
        for o in load.outcomes
        if o.status != 200
    ]
    return RotationResult(
        requests=len(load.outcomes),
        failed=load.errors(),
        statuses=statuses,
        steps=steps,
        duration_s=duration_s,
        unplanned_exits=list(run.watch.unplanned),
        gpu_tasks_started=runner.started_count - started_before,
        min_frontend_targets=run.min_targets,
        min_healthy_frontends=run.min_healthy,
        evidence=rotation_evidence(deployment, before, workdir / "evidence"),
        failures=failures,
    )


# --- evidence ------------------------------------------------------------------------------------


def _dynamo_payload(deployment: TierDeployment) -> dict[str, str]:
    arn = deployment.deployed.planes["DynamoSecretArn"]
    return dict(json.loads(aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]))


def _current_ca(deployment: TierDeployment) -> x509.Certificate:
    name = secret_name(deployment.deployed.parameters["DeploymentName"], "ca")
    payload = json.loads(aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    return x509.load_pem_x509_certificate(payload["ca_cert"].encode())


def _issued_by(cert_pem: str, ca: x509.Certificate) -> bool:
    """``cert_pem`` carries ``ca``'s signature."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _only(bundle_pem: str, ca: x509.Certificate) -> bool:
    return x509.load_pem_x509_certificates(bundle_pem.encode()) == [ca]


def identity(payload: dict[str, str], directory: Path, ca_pem: str) -> PlanesClient:
    """A client with ``payload``'s certificate and key, trusting ``ca_pem``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"ca_bundle": ca_pem, "client_cert": payload["client_cert"], "client_key": payload["client_key"]}
    for name, text in files.items():
        (directory / f"{name}.pem").write_text(text)
        (directory / f"{name}.pem").chmod(0o600)
    context = ssl.create_default_context(cafile=str(directory / "ca_bundle.pem"))
    context.load_cert_chain(str(directory / "client_cert.pem"), str(directory / "client_key.pem"))
    return PlanesClient(context, directory)


def served_certificate(address: str, port: int, client: PlanesClient) -> str | None:
    """The certificate the server at ``address:port`` presents, once ``client``'s context
    (its CA bundle alone) verified it; None when the handshake fails."""
    context = client.context
    context.check_hostname = False  # the address, not a name: the CA is what is checked here
    try:
        with (
            socket.create_connection((address, port), timeout=3) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    if der is None:
        return None
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def rotation_evidence(deployment: TierDeployment, before: dict[str, str], workdir: Path) -> RotationEvidence:
    new_ca = _current_ca(deployment)
    new_ca_pem = new_ca.public_bytes(Encoding.PEM).decode()
    now = _dynamo_payload(deployment)
    current = identity(now, workdir / "current", new_ca_pem)
    previous = identity(before, workdir / "previous", new_ca_pem)
    members = list(deployment.tier.members.values())
    served = [served_certificate(m.address, 2379, current) for m in members]
    dynamo_clients = []
    for task in deployment.runner.tasks:
        for container in task.local.containers.values():
            env = container.plan.env
            if all(k in env for k in DYNAMO_CONTAINER_ENV):
                dynamo_clients.append(
                    _issued_by(env["ETCD_AUTH_CLIENT_CERT"], new_ca) and _only(env["ETCD_AUTH_CA"], new_ca)
                )
    url = members[0].etcd_url
    return RotationEvidence(
        member_issuers_new=[pem is not None and _issued_by(pem, new_ca) for pem in served],
        dynamo_clients_new=dynamo_clients,
        old_client_of_old_ca=not _issued_by(before["client_cert"], new_ca),
        old_client_refused=previous.etcdctl(url, "get", "v1/", "--prefix", "--keys-only").returncode != 0,
        new_client_accepted=current.etcdctl(url, "get", "v1/", "--prefix", "--keys-only").returncode == 0,
    )
