"""Cross-host networking on the real Dynamo 1.6.1: a frontend task and a prefill task on two hosts.

Each GPU instance has its own loopback address (127.32.1.x with ``LOCAL_ECS_VPC_OCTET=32``) and
the tasks run in host network mode, as on EC2. The default specs, with the container checks
the stack adds (`with_worker_readiness`), serve a disaggregated request across the two; a
prefill worker told to advertise an address its host does not have never serves; and every
socket the Dynamo processes listen on is one template.yaml opens to some source (the workers'
system ports to the metrics collector alone, which reads each worker's own queue there, found
as on AWS through ECS and EC2), so a new listener without a security group rule fails here.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from devtools import netguard
from devtools.local_ecs import addresses
from devtools.local_ecs.client import chat, first_success, get
from devtools.local_ecs.deployment import MODEL, LocalDeployment, local_deployment
from devtools.local_ecs.runner import GpuTask
from devtools.local_ecs.sockets import Listener, listening_sockets
from devtools.services import MotoServer
from devtools.template import ingress_rules
from dynamo_ecs import aws
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DEFAULT_WORKER_SYSTEM_PORTS, SERVICE_ROLES, DeploymentConfig
from dynamo_ecs.cross_host import ports_of
from dynamo_ecs.endpoints.gpu_services import FRONTEND_PORT, with_worker_readiness
from dynamo_ecs.signals.base import RoundContext
from dynamo_ecs.signals.discovery import read_cluster
from dynamo_ecs.signals.workers import WorkerSource
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time

SERVE_TIMEOUT_S = 60.0
NEVER_SERVES_S = 20.0  # the default specs serve within 2-6 s of starting
HOST_LOCAL = "127.0.0.1"  # a listener here is reachable from its own host only, on EC2 as here


def opened_ports() -> dict[tuple[int, int], set[str]]:
    """template.yaml's ingress rules into the GPU instances: port range -> the sources it admits."""
    opened: dict[tuple[int, int], set[str]] = {}
    for rule in ingress_rules("GpuInstanceSecurityGroup"):
        assert rule["IpProtocol"] == "tcp", rule  # an all-protocol rule would open everything
        source = rule["SourceSecurityGroupId"]["Ref"]
        opened.setdefault((rule["FromPort"], rule["ToPort"]), set()).add(source)
    return opened


def sources_reaching(port: int, opened: dict[tuple[int, int], set[str]]) -> set[str]:
    return {s for (first, last), sources in opened.items() if first <= port <= last for s in sources}


def task_listeners(task: GpuTask) -> list[Listener]:
    pids = [pid for container in task.local.containers.values() for pid in container.pids()]
    return listening_sockets(pids)


def spec_with_env(role: str, **environment: str) -> dict[str, Any]:
    spec = copy.deepcopy(load_default_spec(role))  # type: ignore[arg-type]
    env = spec["containerDefinitions"][0]["environment"]
    env[:] = [v for v in env if v["name"] not in environment]
    env += [{"name": name, "value": value} for name, value in environment.items()]
    return spec


def stopped_logs(deployment: LocalDeployment, role: str) -> str:
    return "\n".join(log for s in deployment.runner.stopped if s.role == role for log in s.logs.values())


def test_the_default_specs_serve_across_two_hosts_on_the_ports_the_template_opens(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    opened = opened_ports()
    specs: dict[str, dict[str, Any]] = {
        role: with_worker_readiness(
            copy.deepcopy(load_default_spec(role)),
            DEFAULT_WORKER_SYSTEM_PORTS[role],
            FRONTEND_PORT if role == "frontend" else None,
        )
        for role in SERVICE_ROLES
    }
    with local_deployment(tmp_path, specs=specs) as deployment:
        runner = deployment.runner
        runner.container_check_interval_s = 1.0
        frontend, prefill = runner.running("frontend")[0], runner.running("prefill")[0]
        assert frontend.address != prefill.address  # two hosts
        # When a chat completion is sent to the frontend task
        result = first_success(deployment.frontend_url(), MODEL, SERVE_TIMEOUT_S, on_wait=runner.tick)
        # Then it succeeds, prefilled on the other host, and nothing stopped on the way
        assert result is not None, runner.stopped
        _, metrics = get(f"{deployment.frontend_url()}/metrics")
        assert 'dynamo_frontend_model_ready{model="Qwen/Qwen3-0.6B"} 1' in metrics
        assert "request received" in prefill.local.containers["dynamo-prefill"].log_tail(400)
        assert runner.stopped == []
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while not (runner.healthy(frontend) and runner.healthy(prefill)):  # the checks, in the task
            assert time.monotonic() < deadline, (frontend.container_health, prefill.container_health)
            runner.tick()
            time.sleep(0.2)

        for task in (frontend, prefill):
            listeners = task_listeners(task)
            # Each pinned port is listened on at the task's host address (Dynamo took the pin) ...
            listened = {(listener.address, listener.port) for listener in listeners}
            for pinned in ports_of(task.role):  # type: ignore[arg-type]
                if pinned.variable.startswith("DYN_"):  # vLLM's and UCX's do not run here
                    assert (task.address, pinned.first) in listened, (task.role, pinned, listeners)
            # ... and every socket a Dynamo process listens on is on the host's address and open
            # to some source in template.yaml: GPU instances for the workers' and the response
            # stream's ports, the load balancer for the frontend's HTTP port.
            for listener in listeners:
                if listener.address == HOST_LOCAL:
                    continue
                assert listener.address == task.address, (task.role, listener)
                if listener.port == DEFAULT_WORKER_SYSTEM_PORTS[task.role]:  # type: ignore[index]
                    # its container check's (inside the task) and the collector's: opened to it alone
                    assert sources_reaching(listener.port, opened) == {"MetricsCollectorSecurityGroup"}
                    continue
                assert sources_reaching(listener.port, opened), (
                    f"{task.role} listens on {listener.port}, which template.yaml opens to nothing"
                )
        frontend_ports = {listener.port for listener in task_listeners(frontend)}
        prefill_ports = {listener.port for listener in task_listeners(prefill)} - {
            DEFAULT_WORKER_SYSTEM_PORTS["prefill"]
        }
        assert "LoadBalancerSecurityGroup" in set.union(
            *(sources_reaching(p, opened) for p in frontend_ports)
        )
        for port in prefill_ports:  # only other GPU hosts ever call a prefill worker
            assert sources_reaching(port, opened) == {"GpuInstanceSecurityGroup"}, port

        # And the collector, configured as the stack configures it (no port set), finds both
        # workers through ECS and EC2 and reads their own queues on the ports their specs bind
        config = DeploymentConfig()
        netguard.mirror_private_to_loopback()  # 10.a.b.c is where the local ECS runs that host
        try:
            cluster = read_cluster(config, aws.client("ecs"), aws.client("ec2"))
            context = RoundContext(now=time.time(), cluster=cluster)
            readings = {role: WorkerSource(config, role).read(context, None) for role in SERVICE_ROLES}
        finally:
            netguard.mirror_private_to_loopback(False)
        for role, reading in readings.items():
            assert (reading.targets, reading.errors) == (1, 0), (role, reading.notes)
            published = {d.metric: d.value for d in reading.data}
            # served and idle now: nothing waits in either worker, nothing is in flight
            assert published == {names.WORKER_QUEUE_DEPTH: 0, names.WORKER_ACTIVE_REQUESTS: 0}, role


def test_a_prefill_worker_advertising_an_address_its_host_lacks_never_serves(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    # Given a prefill task definition whose request plane advertises an address of no instance
    nowhere = f"10.{addresses.vpc_octet()}.250.250"
    specs = {"prefill": spec_with_env("prefill", DYN_TCP_RPC_HOST=nowhere)}
    with local_deployment(tmp_path, specs=specs) as deployment:
        url = deployment.frontend_url()
        statuses: list[int] = []
        deadline = time.monotonic() + NEVER_SERVES_S
        while time.monotonic() < deadline:
            deployment.runner.tick()
            answer = chat(url, MODEL, timeout_s=5)
            assert not answer.ok, answer
            # From the model's first appearance on (before its decode worker registers, the
            # frontend answers 404: no such model yet)
            if answer.status == 503 or statuses:
                statuses.append(answer.status)
            time.sleep(0.5)
        # Then the frontend refuses every request with 503 (its model is not ready: no prefill
        # worker ever registers), and the prefill tasks stop, each replaced by another that fails
        assert len(statuses) > 10 and set(statuses) == {503}
        assert "Cannot assign requested address" in stopped_logs(deployment, "prefill")
        reasons = [s.reason for s in deployment.runner.stopped if s.role == "prefill"]
        # (the worker exits with code 0, as Dynamo does on a lost etcd lease too)
        assert reasons and set(reasons) == {
            "Essential container in task exited: dynamo-prefill exited with 0"
        }


def test_a_prefill_worker_advertising_loopback_does_not_start_here(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    # Given a prefill task definition that advertises the host's loopback (unreachable from the
    # frontend's host on ECS; reachable from every "host" of one machine, so refused here)
    specs = {"prefill": spec_with_env("prefill", DYN_TCP_RPC_HOST="127.0.0.1")}
    with local_deployment(tmp_path, specs=specs, desired={"frontend": 0, "prefill": 1}) as deployment:
        deployment.runner.tick()
        [stopped, *_] = [s for s in deployment.runner.stopped if s.role == "prefill"]
        assert stopped.reason.startswith("CannotStartContainerError: DYN_TCP_RPC_HOST=127.0.0.1")
        assert "loopback" in stopped.reason
