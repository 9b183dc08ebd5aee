"""The local stand-in for a deployed stack: moto, real NATS and etcd, simulated Dynamo tasks.

`LocalStack.start` brings up, on loopback only: moto server (ECS, EC2, DynamoDB, CloudWatch,
EventBridge, SQS, SNS), a real nats-server with JetStream and its monitor, and a real etcd,
both standing in for the infra task's containers. It creates the stack's resources in moto
(the state table from template.yaml's own properties, the rest through the API), and gives
every 10.x address moto hands out a loopback meaning through `devtools.netguard.redirect`:
the infra task's :4222/:8222/:2379 go to nats-server and etcd, each frontend task's :8000 to
its own simulated Dynamo frontend (`devtools.dynamo_frontend`). The operator's handlers are
loaded from ``functions/`` and called through ``lambda_handler(event, context)``.

What plays ECS's part: `GpuTaskAgent` starts a service's tasks ``START_DELAY_S`` after its
desired count rises (instance start plus model load), stops the newest ones when it falls,
and replaces them all when the service moves to a new task definition.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from devtools import netguard
from devtools.cloudformation_stub import CloudFormationStub
from devtools.dynamo_frontend import MetricsServer
from devtools.ecs_world import EcsWorld, task_private_ip
from devtools.handlers import load_handler_module
from devtools.moto_stack import (
    DeployedStack,
    add_capacity_provider,
    deploy_on_moto,
    network,
    placeable_infra_definition,
)
from devtools.scaling_inputs import ACCOUNT, REGION, create_scaling_alarm
from devtools.services import (
    EtcdServer,
    NatsServer,
    aws_test_environment,
    etcd_server,
    http_post_json,
    moto_server,
    nats_server,
)
from devtools.sim_clock import SimClock
from dynamo_ecs import aws, clock
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole, load_config
from dynamo_ecs.endpoints.render import strip_read_only
from dynamo_ecs.scaling.signals import signal_specs
from dynamo_ecs.signals.breach_events import EVENT_SOURCE

START_DELAY_S = 120.0  # a new GPU task: instance start and model load
GPU_INSTANCES = 8
# What `sam deploy --guided` asks for; the network comes from `devtools.moto_stack.network`.
STACK_PARAMETERS = {
    "DeploymentName": "dynamo",
    "NgcSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-login-AbCdEf",
}
HANDLERS = ("bootstrap", "infra_watcher", "metrics_collector", "scaler", "redeploy")
STREAM, CONSUMER = "dynamo-prefill", "prefill-worker"


@dataclass
class LambdaContext:
    function_name: str

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:dynamo-{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@dataclass
class GpuTask:
    role: ServiceRole
    arn: str
    instance_index: int
    task_definition: str
    server: MetricsServer | None = None


@dataclass
class GpuTaskAgent:
    """Plays ECS: keeps each service's RUNNING tasks at its desired count, with a start delay."""

    world: EcsWorld
    config: DeploymentConfig
    clock: SimClock
    tasks: list[GpuTask] = field(default_factory=list)
    pending: dict[ServiceRole, list[float]] = field(default_factory=lambda: {"frontend": [], "prefill": []})
    _placeable_copies: dict[str, str] = field(default_factory=dict)

    def running(self, role: ServiceRole) -> list[GpuTask]:
        return [t for t in self.tasks if t.role == role]

    def service(self, role: ServiceRole) -> dict[str, Any]:
        name = self.config.service(role).service
        answer = self.world.ecs.describe_services(cluster=self.config.gpu_cluster, services=[name])
        return dict(answer["services"][0])

    def tick(self, immediate: bool = False) -> list[str]:
        """Converge every service one step; returns what happened, for the narration."""
        notes = []
        for role in SERVICE_ROLES:
            service = self.service(role)
            desired, definition = int(service["desiredCount"]), service["taskDefinition"]
            stale = [t for t in self.running(role) if t.task_definition != definition]
            for task in stale:  # a rollout replaces every task (started again below)
                self._stop(task)
            if stale:
                notes.append(f"{role}: {len(stale)} task(s) replaced by the new revision")
            running = self.running(role)
            waiting = self.pending[role]
            missing = desired - len(running) - len(waiting)
            if missing > 0:
                ready_at = self.clock.now + (0.0 if immediate or stale else START_DELAY_S)
                waiting.extend([ready_at] * missing)
            while waiting and len(running) + len(waiting) > desired:
                waiting.pop()  # asked for less before they started
            while len(running) > desired:
                self._stop(running.pop())
                notes.append(f"{role}: one task stopped")
            ready = [at for at in waiting if at <= self.clock.now]
            self.pending[role] = [at for at in waiting if at > self.clock.now]
            for _ in ready:
                self._start(role, definition)
            if ready:
                notes.append(f"{role}: {len(ready)} task(s) RUNNING")
        return notes

    def _free_instance(self) -> int:
        used = {t.instance_index for t in self.tasks}
        return next(i for i in range(len(self.world.gpu_instances)) if i not in used)

    def _placeable(self, definition: str) -> str:
        """A copy of ``definition`` moto can place (it needs container-level memory; ECS does not).

        Registered under its own family, so the operator's families and revision counts are
        untouched; networking, environment and image are the service's own.
        """
        if definition not in self._placeable_copies:
            described = self.world.ecs.describe_task_definition(taskDefinition=definition)["taskDefinition"]
            spec = strip_read_only(described)
            spec["family"] = f"moto-placement-{spec['family']}"
            for container in spec["containerDefinitions"]:
                container.setdefault("memory", 512)
            registered = self.world.ecs.register_task_definition(**spec)["taskDefinition"]
            self._placeable_copies[definition] = registered["taskDefinitionArn"]
        return self._placeable_copies[definition]

    def _start(self, role: ServiceRole, definition: str) -> None:
        index = self._free_instance()
        svc = self.config.service(role)
        started = self.world.ecs.start_task(
            cluster=self.config.gpu_cluster,
            taskDefinition=self._placeable(definition),
            containerInstances=[self.world.gpu_instances[index]["containerInstanceArn"]],
            group=f"service:{svc.service}",
            startedBy=f"ecs-svc/{svc.service}",
        )["tasks"][0]
        gpu = GpuTask(role, started["taskArn"], index, definition)
        if role == "frontend":
            gpu.server = MetricsServer().start()
            netguard.redirect(self.instance_ip(index), self.config.frontend.metrics_port, gpu.server.port)
        self.tasks.append(gpu)

    def _stop(self, task: GpuTask) -> None:
        self.world.stop_task(self.config.gpu_cluster, task.arn, reason="scaled in or replaced")
        if task.server is not None:
            netguard.clear_redirects(self.instance_ip(task.instance_index))
            task.server.stop()
        self.tasks.remove(task)

    def instance_ip(self, index: int) -> str:
        ec2_id = self.world.gpu_instances[index]["ec2InstanceId"]
        reservation = self.world.ec2.describe_instances(InstanceIds=[ec2_id])["Reservations"][0]
        return str(reservation["Instances"][0]["PrivateIpAddress"])

    def stop_all(self) -> None:
        for task in list(self.tasks):
            if task.server is not None:
                task.server.stop()
        self.tasks.clear()


class LocalStack:
    """Everything the demo and the end-to-end tests run against. Use `LocalStack.start`."""

    def __init__(
        self,
        workdir: Path,
        nats: NatsServer,
        etcd: EtcdServer,
        cloudformation: CloudFormationStub,
        deployed: DeployedStack,
    ) -> None:
        self.workdir = workdir
        self.nats = nats
        self.etcd = etcd
        self.cloudformation = cloudformation
        self.deployed = deployed
        self.clock = SimClock()
        self.config = load_config()
        self.world = EcsWorld(
            self.config,
            REGION,
            vpc_id=deployed.parameters["VpcId"],
            subnet_ids=deployed.parameters["TaskSubnetIds"].split(","),
            security_group_id=deployed.physical["InfraSecurityGroup"],
            infra_task_definition=placeable_infra_definition(deployed.full, deployed.outputs),
        )
        for _ in range(GPU_INSTANCES):
            self.world.add_gpu_instance()
        self.capacity_provider = add_capacity_provider(deployed.full, self.config.gpu_cluster)
        self.agent = GpuTaskAgent(self.world, self.config, self.clock)
        self.handlers: dict[str, ModuleType] = {}
        self.infra_task: dict[str, Any] = {}
        self.breach_queue_url = ""
        self.stop_requested = False  # set by the demo's Ctrl-C handler; checked every simulated minute

    # -- set-up ----------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path) -> Iterator[LocalStack]:
        saved_env = dict(os.environ)
        saved_modules = {name: sys.modules.get(f"functions_{name}_app") for name in HANDLERS}
        netguard.install()
        stack: LocalStack | None = None
        try:
            # moto reports a new service's first deployment COMPLETED only when it believes
            # its tasks run; with this knob the bootstrap's services (1 task each) are.
            with (
                moto_server(workdir, extra_env={"MOTO_ECS_SERVICE_RUNNING": "1"}) as moto,
                nats_server(workdir) as nats,
                etcd_server(workdir) as etcd,
            ):
                os.environ.update(aws_test_environment(moto.url))
                aws.reset_clients()
                deployed = deploy_on_moto("dynamo", {**STACK_PARAMETERS, **network()})
                for logical_id in deployed.function_ids:  # the DYNAMO_ECS_* environment each got
                    os.environ.update(deployed.function_environment(logical_id))
                os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # EMF lines would drown the narration
                cloudformation = CloudFormationStub()
                try:
                    stack = cls(workdir, nats, etcd, cloudformation, deployed)
                    clock.use(stack.clock)
                    stack._create_resources()
                    yield stack
                finally:
                    if stack is not None:
                        stack.agent.stop_all()
                    cloudformation.close()
        finally:
            clock.use(None)
            netguard.clear_redirects()
            os.environ.clear()
            os.environ.update(saved_env)
            aws.reset_clients()
            for name, module in saved_modules.items():
                sys.modules.pop(f"functions_{name}_app", None)
                if module is not None:
                    sys.modules[f"functions_{name}_app"] = module

    def _create_resources(self) -> None:
        cloudwatch = aws.client("cloudwatch")
        for role in SERVICE_ROLES:  # moto's CloudFormation skips alarms: made with the same names
            for spec in signal_specs(self.config, role):
                create_scaling_alarm(cloudwatch, self.config, role, spec.name, spec.metric, spec.target)
        # The stack's own rule routes the collector's breach events to the scaler. moto cannot
        # deliver to a Lambda target (PutEvents fails on any rule that has one, and it matches
        # schedule rules against every event), so the demo takes the Lambda targets off every
        # rule, plays the schedules itself, and gives the breach rule a queue it drains into
        # the scaler's handler: the pattern that matches is the stack's own.
        sqs = aws.client("sqs")
        self.breach_queue_url = sqs.create_queue(QueueName="dynamo-scaler-breaches")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.breach_queue_url, AttributeNames=["QueueArn"])
        events = aws.client("events")
        rules = events.list_rules()["Rules"]
        for rule in rules:
            targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            lambdas = [t["Id"] for t in targets if ":lambda:" in t["Arn"]]
            if lambdas:
                events.remove_targets(Rule=rule["Name"], Ids=lambdas)
        breach = next(r["Name"] for r in rules if EVENT_SOURCE in r.get("EventPattern", ""))
        events.put_targets(
            Rule=breach, Targets=[{"Id": "scaler-queue", "Arn": arn["Attributes"]["QueueArn"]}]
        )
        asyncio.run(self._create_prefill_stream())
        self.infra_task = self.world.run_infra_task()
        self.route_infra(self.infra_task)
        for name in HANDLERS:
            self.handlers[name] = load_handler_module(name, fresh=True)

    async def _create_prefill_stream(self) -> None:
        import nats

        connection = await nats.connect(self.nats.url)
        jetstream = connection.jetstream()
        await jetstream.add_stream(name=STREAM, subjects=[f"{STREAM}.*"])
        await jetstream.pull_subscribe(f"{STREAM}.*", durable=CONSUMER)
        await connection.close()

    def route_infra(self, task: dict[str, Any]) -> str:
        """The infra task's address now reaches the local etcd and nats-server."""
        ip = task_private_ip(task)
        netguard.redirect(ip, self.config.infra.nats_port, self.nats.port)
        netguard.redirect(ip, self.config.infra.nats_monitor_port, self.nats.monitor_port)
        netguard.redirect(ip, self.config.infra.etcd_port, self.etcd.port)
        return ip

    # -- calling the operator ------------------------------------------------------------------

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        result = self.handlers[function].lambda_handler(event, LambdaContext(function))
        return dict(result or {})

    def drain_breach_events(self) -> list[dict[str, Any]]:
        """The events EventBridge routed to the scaler's queue, oldest first."""
        sqs = aws.client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(QueueUrl=self.breach_queue_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return out
            for message in messages:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.breach_queue_url, ReceiptHandle=message["ReceiptHandle"])

    # -- the infra task's etcd, as the workers see it ---------------------------------------------

    def etcd_url_of(self, role: ServiceRole) -> str:
        """ETCD_ENDPOINTS of the task definition the service runs now."""
        definition = self.world.ecs.describe_task_definition(
            taskDefinition=self.agent.service(role)["taskDefinition"]
        )
        for container in definition["taskDefinition"]["containerDefinitions"]:
            for variable in container.get("environment", []):
                if variable["name"] == "ETCD_ENDPOINTS":
                    return str(variable["value"])
        raise LookupError(f"{role}: no ETCD_ENDPOINTS in its task definition")

    def register_workers(self) -> dict[ServiceRole, str]:
        """Each service's workers register at the etcd their task definition names (through the redirect)."""
        used = {}
        for role in SERVICE_ROLES:
            url = self.etcd_url_of(role)
            http_post_json(
                f"{url}/v3/kv/put", {"key": _b64(f"v1/instances/dynamo/{role}"), "value": _b64("ready")}
            )
            used[role] = url
        return used

    def etcd_keys(self) -> int:
        answer = http_post_json(f"{self.etcd.url}/v3/kv/range", {"key": _b64("\0"), "range_end": _b64("\0")})
        return int(json.loads(answer).get("count", 0))

    def wipe_etcd(self) -> None:
        """A replacement infra task starts with an empty etcd."""
        http_post_json(f"{self.etcd.url}/v3/kv/deleterange", {"key": _b64("\0"), "range_end": _b64("\0")})

    def bootstrap_properties(self) -> dict[str, str]:
        """The custom resource's properties as CloudFormation resolved them from the stack."""
        function = self.deployed.physical["BootstrapFunction"]
        return {
            **self.deployed.custom_resource_properties,
            "CapacityProvider": self.capacity_provider,
            "ServiceToken": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}",
        }


def _b64(text: str) -> str:
    """etcd's JSON gateway takes keys and values base64-encoded (key and range_end NUL: every key)."""
    return base64.b64encode(text.encode()).decode()
