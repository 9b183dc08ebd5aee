"""The worker parser on system-port ``/metrics`` captured from real Dynamo 1.6.1 mockers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.endpoints.gpu_services import with_worker_readiness
from dynamo_ecs.signals.base import RoundContext
from dynamo_ecs.signals.collector import default_collector
from dynamo_ecs.signals.discovery import ClusterView, DefinitionFacts, ServiceTask, definition_facts
from dynamo_ecs.signals.prometheus_scrape import NotPrometheusTextError
from dynamo_ecs.signals.workers import WorkerSource, parse_worker_metrics, worker_data, worker_targets
from dynamo_ecs.specs import load_default_spec

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / f"dynamo_1_6_1_{name}.txt").read_text()


def test_a_busy_decode_worker_s_queue_is_its_engine_s_waiting_requests() -> None:
    # Given the decode mocker (4 sequences at a time) 1.5 s into a burst of 48
    sample = parse_worker_metrics(fixture("tcp_worker_decode_loaded"))
    # Then 40 wait in its engine (the work handler's own queue is empty) of the 44 it holds
    assert (sample.queue_depth, sample.active) == (40, 44)


def test_the_prefill_mocker_has_no_engine_gauge_only_the_handler_queue() -> None:
    sample = parse_worker_metrics(fixture("tcp_prefill_bound_worker_prefill_loaded"))
    # The router queued the backlog (44): the worker holds 1, queues nothing itself
    assert (sample.queue_depth, sample.active) == (0, 1)


def test_worker_data_sums_the_service_s_workers() -> None:
    busy = parse_worker_metrics(fixture("tcp_worker_decode_loaded"))
    done = parse_worker_metrics(fixture("tcp_worker_decode_after"))
    data = {(d.metric, d.service): d.value for d in worker_data("frontend", [busy, done])}
    assert data == {
        (names.WORKER_QUEUE_DEPTH, "frontend"): 40,
        (names.WORKER_ACTIVE_REQUESTS, "frontend"): 44,
    }
    assert worker_data("prefill", []) == []  # no worker read: no value, not zero


def test_a_frontend_body_is_not_a_worker_queue() -> None:
    sample = parse_worker_metrics(fixture("tcp_frontend_loaded"))
    assert (sample.queue_depth, sample.active) == (None, None)
    with pytest.raises(NotPrometheusTextError):
        parse_worker_metrics("<html>no</html>")


def test_the_worker_sources_are_built_by_default_on_the_stack_specs_ports() -> None:
    # Given no setting at all: the stack's GPU specs bind 9091 (frontend task) and 9090 (prefill)
    sources = {s.name: s for s in default_collector(DeploymentConfig()).sources}
    workers = {name: s for name, s in sources.items() if isinstance(s, WorkerSource)}
    assert {name: s.port for name, s in workers.items()} == {
        "workers_frontend": 9091,
        "workers_prefill": 9090,
    }
    # and <role>.system_port moves both the specs' port and the collector's
    config = DeploymentConfig.model_validate({"prefill": {"system_port": 9345}})
    assert WorkerSource(config, "prefill").port == 9345
    reading = WorkerSource(config, "prefill").read(RoundContext(now=0.0, cluster=None), None)
    assert (reading.targets, reading.errors, reading.data) == (1, 1, [])  # no cluster: one error


def service_task(name: str, system_port: int | None, mode: str = "host") -> ServiceTask:
    return ServiceTask(
        role="prefill",
        task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/dynamo-gpu/{name}",
        task_definition_arn="arn:aws:ecs:us-east-1:123456789012:task-definition/dynamo-prefill:3",
        network_mode=mode,
        container_instance_arn="arn:ci",
        ec2_instance_id="i-1",
        instance_ip="10.0.1.4",
        task={},
        system_port=system_port,
    )


def test_only_tasks_whose_worker_serves_the_read_port_are_scraped() -> None:
    # Given three prefill tasks: the stack's spec (9090), a user's spec without DYN_SYSTEM_PORT,
    # and a user's spec binding another port, which the security group does not open
    view = ClusterView(
        {"prefill": [service_task("a", 9090), service_task("b", None), service_task("c", 9345)]}
    )
    # When the worker targets are chosen for the port the collector reads
    found = worker_targets(view, "prefill", 9090)
    # Then the stack's task is scraped on its instance's address
    assert [t.url for t in found.targets] == ["http://10.0.1.4:9090/metrics"]
    # the task binding no port is skipped with a note (no error: its worker serves no /metrics)
    [skipped] = found.skipped
    assert (
        skipped.startswith("arn:aws:ecs:us-east-1:123456789012:task/dynamo-gpu/b: ")
        and "DYN_SYSTEM_PORT" in skipped
    )
    # and the one on another port is an error, never requested (the group would drop it: a wait)
    [problem] = found.problems
    assert "DYN_SYSTEM_PORT=9345" in problem and "reads 9090" in problem


def test_a_task_on_another_port_is_counted_without_a_request() -> None:
    config = DeploymentConfig()
    view = ClusterView({"prefill": [service_task("b", None), service_task("c", 9345)]})
    reading = WorkerSource(config, "prefill").read(RoundContext(now=0.0, cluster=view), None)
    # one target (the task on 9345) and one error, no data; the task without a port is only a note
    assert (reading.targets, reading.errors, reading.data) == (1, 1, [])
    assert len(reading.notes) == 2


def test_the_system_port_is_read_from_the_task_definition() -> None:
    spec = load_default_spec("prefill")
    assert definition_facts(spec).system_port is None  # the default spec alone binds none
    readied = with_worker_readiness(copy.deepcopy(spec), 9090)
    assert definition_facts(readied) == DefinitionFacts("host", 9090)
    other = copy.deepcopy(spec)
    other["containerDefinitions"][0]["environment"].append({"name": "DYN_SYSTEM_PORT", "value": "nine"})
    assert definition_facts(other).system_port is None
