"""The local stand-in for a deployed stack: moto plays AWS, real processes run the tasks.

`LocalStack.start` brings up, on loopback only: moto server (ECS, EC2, DynamoDB, CloudWatch,
EventBridge, SQS, SNS, Secrets Manager) with template.yaml created on its CloudFormation; the
infra tier run from the task definitions the stack registered (`devtools.local_ecs.infra`):
by default template.yaml's default layout, three etcd + NATS members with the planes on (TLS
and authentication, the credentials made by the stack's own credential maker), or with
``InfraMembers`` "1" the single, unauthenticated infra task; and `devtools.local_ecs.runner`
plays ECS for the GPU services, starting the real Dynamo frontend and workers (the mocker
engine in place of vLLM) from the task definitions the operator registers, with their ECS
secrets resolved from moto's Secrets Manager and the members' names reaching the members.
Every 10.x address moto hands out means 127.x here
(`devtools.netguard.mirror_private_to_loopback`). The operator's handlers are loaded from
``functions/`` and called through ``lambda_handler(event, context)``, on the real clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from devtools import aws_state_rules, netguard
from devtools.cloudformation_stub import CloudFormationStub
from devtools.ecs_world import EcsWorld
from devtools.handlers import load_handler_module
from devtools.local_ecs.deployment import LocalDeployment
from devtools.local_ecs.infra import local_tier
from devtools.local_ecs.runner import GpuTaskRunner
from devtools.local_ecs.tier_deployment import TierDeployment
from devtools.moto_stack import (
    DeployedStack,
    add_capacity_provider,
    deploy_on_moto,
    network,
    placeable_infra_definition,
)
from devtools.scaling_inputs import ACCOUNT, REGION, create_scaling_alarm
from devtools.services import aws_test_environment, moto_server
from dynamo_ecs import aws
from dynamo_ecs.config import SERVICE_ROLES, load_config
from dynamo_ecs.scaling.signals import signal_specs
from dynamo_ecs.signals.breach_events import EVENT_SOURCE

GPU_INSTANCES = 8
# What `sam deploy --guided` asks for; the network comes from `devtools.moto_stack.network`.
# InfraMembers is the template's default (3: the three-member tier, planes on); the demo's
# single-task part passes "1".
STACK_PARAMETERS = {
    "DeploymentName": "dynamo",
    "NgcSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-login-AbCdEf",
    # No GPUs here: the GPU utilization signals have nothing to read. No JetStream streams
    # either (Dynamo 1.6 keeps no work in JetStream, docs/signals.md).
    "FrontendGpuUtilizationPct": "off",
    "PrefillGpuUtilizationPct": "off",
    "PrefillJetStreamLagPerReplica": "off",
}
HANDLERS = ("bootstrap", "infra_watcher", "metrics_collector", "scaler", "redeploy")
# The demo's changes to the stack's configuration: a run of a few minutes needs 10-s metrics
# (the high-resolution mode: six rounds per collector invocation) and a shorter scale-in window.
DEMO_CONFIG = {
    "DYNAMO_ECS_SIGNALS__SAMPLES_PER_INVOCATION": "6",
    "DYNAMO_ECS_SCALING__METRIC_PERIOD_S": "10",
    "DYNAMO_ECS_SCALING__SCALE_DOWN_STABILIZATION_S": "20",
    "DYNAMO_ECS_SCALING__RATE_LIMIT_PERIOD_S": "15",
    "DYNAMO_ECS_SCALING__METRIC_MAX_AGE_S": "40",
}
# What the mocker stands in for: the model load (--startup-time), and an engine whose prefill
# of a 1000-token prompt takes about 0.2 s, one sequence at a time (--speedup-ratio,
# --max-num-seqs), so that one prefill worker serves about 4 requests a second and a few
# more queue up: the TTFT the frontends measure then depends on the prefill capacity.
ENGINE_ARGS = {
    "frontend": ("--startup-time", "3", "--speedup-ratio", "0.5"),
    "prefill": ("--startup-time", "3", "--speedup-ratio", "0.1", "--max-num-seqs", "1"),
}


@dataclass
class LambdaContext:
    function_name: str

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:dynamo-{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class LocalStack:
    """Everything the demo and the end-to-end tests run against. Use `LocalStack.start`."""

    def __init__(self, workdir: Path, cloudformation: CloudFormationStub, deployed: DeployedStack) -> None:
        self.workdir = workdir
        self.cloudformation = cloudformation
        self.deployed = deployed
        self.config = load_config()
        self.world = EcsWorld(
            self.config,
            REGION,
            vpc_id=deployed.parameters["VpcId"],
            subnet_ids=deployed.parameters["TaskSubnetIds"].split(","),
            security_group_id=deployed.physical["InfraSecurityGroup"],
        )
        if not self.three_members:  # the single infra service's task definition, as moto can run it
            self.world.infra_task_definition = placeable_infra_definition(deployed.full, deployed.outputs)
        for _ in range(GPU_INSTANCES):
            self.world.add_gpu_instance()
        self.capacity_provider = add_capacity_provider(deployed.full, self.config.gpu_cluster)
        self.handlers: dict[str, ModuleType] = {}
        self._deployment: LocalDeployment | TierDeployment | None = None
        self.breach_queue_url = ""
        self.stop_requested = False  # set by the demo's Ctrl-C handler; checked between ticks

    @property
    def three_members(self) -> bool:
        """template.yaml's default layout (``InfraMembers`` 3), else the single infra task."""
        return bool(self.config.infra.members)

    # -- set-up ----------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path, parameters: Mapping[str, str] | None = None) -> Iterator[LocalStack]:
        """``parameters``: stack parameters over the demo's (`STACK_PARAMETERS`)."""
        saved_env = dict(os.environ)
        saved_modules = {name: sys.modules.get(f"functions_{name}_app") for name in HANDLERS}
        netguard.install()
        netguard.mirror_private_to_loopback()
        stack: LocalStack | None = None
        try:
            # moto reports a new service's first deployment COMPLETED only when it believes
            # its tasks run; with this knob the bootstrap's services (1 task each) are.
            # and every call AWS refuses in its resource's state fails here too (aws_state_rules)
            with (
                aws_state_rules.enforced(),
                moto_server(workdir, extra_env={"MOTO_ECS_SERVICE_RUNNING": "1"}) as moto,
            ):
                os.environ.update(aws_test_environment(moto.url))
                aws.reset_clients()
                deployed = deploy_on_moto("dynamo", {**STACK_PARAMETERS, **(parameters or {}), **network()})
                for logical_id in deployed.function_ids:  # the DYNAMO_ECS_* environment each got
                    os.environ.update(deployed.function_environment(logical_id))
                os.environ.update(DEMO_CONFIG)
                if (parameters or {}).get("PrefillMin") == "0":
                    # template.yaml sets this from !If PrefillScalesToZero, which moto's
                    # CloudFormation leaves "false" here (seen with PrefillMin "0")
                    os.environ["DYNAMO_ECS_SCALING__PREFILL_SCALE_TO_ZERO"] = "true"
                os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # EMF lines would drown the narration
                cloudformation = CloudFormationStub()
                try:
                    stack = cls(workdir, cloudformation, deployed)
                    stack._create_resources()
                    # The members' DNS names, as Cloud Map answers them in the VPC: the metrics
                    # collector reaches each member's etcd by name (and checks its certificate).
                    names = stack.tier.tier.names if stack.three_members else {}
                    with netguard.resolving(names):
                        yield stack
                finally:
                    if stack is not None:
                        stack.stop_processes()
                    cloudformation.close()
        finally:
            netguard.mirror_private_to_loopback(False)
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
        self._deployment = (
            self._start_tier()
            if self.three_members
            else LocalDeployment.start(self.config, self.world, self.workdir, ENGINE_ARGS)
        )
        for name in HANDLERS:
            self.handlers[name] = load_handler_module(name, fresh=True)

    def _start_tier(self) -> TierDeployment:
        """The three members started from their task definitions (the planes on); a runner for
        the GPU services whose tasks reach the members under their names. No GPU service yet:
        the bootstrap function creates them."""
        tier = local_tier(self.deployed, self.workdir)
        runner = GpuTaskRunner(
            self.world.ecs,
            self.world.ec2,
            self.config.gpu_cluster,
            {role: self.config.service(role).service for role in SERVICE_ROLES},
            self.world.gpu_instances,
            self.workdir,
            engine_args=ENGINE_ARGS,
            names=tier.names,
        )
        deployment = TierDeployment(self.config, self.deployed, self.world, tier, runner)
        try:
            deployment.check_instances_unserved()
            tier.start()
        except BaseException:
            deployment.stop()
            raise
        return deployment

    @property
    def deployment(self) -> LocalDeployment | TierDeployment:
        """The real processes: the infra tier's and the GPU tasks' (`devtools.local_ecs`)."""
        if self._deployment is None:
            raise RuntimeError("the local stack is not started")
        return self._deployment

    @property
    def single_task(self) -> LocalDeployment:
        """The deployment of the single-task layout (``InfraMembers`` 1)."""
        deployment = self.deployment
        if not isinstance(deployment, LocalDeployment):
            raise RuntimeError("this stack runs the three-member tier, not the single infra task")
        return deployment

    @property
    def tier(self) -> TierDeployment:
        """The deployment of the three-member tier (template.yaml's default)."""
        deployment = self.deployment
        if not isinstance(deployment, TierDeployment):
            raise RuntimeError("this stack runs the single infra task, not the three-member tier")
        return deployment

    @property
    def runner(self) -> GpuTaskRunner:
        return self.deployment.runner

    def stop_processes(self) -> None:
        if self._deployment is not None:
            self._deployment.stop()

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

    def bootstrap_properties(self) -> dict[str, str]:
        """The custom resource's properties as CloudFormation resolved them from the stack."""
        function = self.deployed.physical["BootstrapFunction"]
        return {
            **self.deployed.custom_resource_properties,
            "CapacityProvider": self.capacity_provider,
            "ServiceToken": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}",
        }
