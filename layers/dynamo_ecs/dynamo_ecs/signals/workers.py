"""The workers' own queues: each Dynamo worker's system ``/metrics`` -> queue depth, active.

A worker serves its system port when ``DYN_SYSTEM_PORT`` is set (off in Dynamo by default;
the stack's GPU specs always set it, for their container checks: `DeploymentConfig.worker_system_port`,
9091 for the frontend task's decode worker, 9090 for prefill, or ``<role>.system_port``). The
collector reads that port on every task whose definition sets it, the port template.yaml opens
from the collector's security group; a task whose definition sets no ``DYN_SYSTEM_PORT`` (a
user's spec without it) is not scraped (a note, no error, no time spent), and one whose
definition sets another port is counted as a scrape error without a request: the security
group would drop it, and each such scrape would wait out its whole deadline.
Measured on Dynamo 1.6.1 (tests/unit/signals/fixtures, decode and prefill mockers under a burst):

- ``vllm:num_requests_waiting`` (labels ``engine``, ``model_name``): the engine scheduler's
  queue, the requests a worker has accepted but not started (40 of the 44 it held during the
  burst, with 4 running). The mocker names it as vLLM does; a prefill mocker exposes no engine
  gauge at all;
- ``dynamo_work_handler_queue_depth``: requests the runtime has received but not yet handed
  to the engine's handler (0 throughout: the handler takes them at once);
- ``dynamo_component_inflight_requests{dynamo_endpoint="generate"}``: requests the worker
  holds, waiting or running.

The queue is the sum of the first two; a body with neither says nothing about a queue
(no value, not zero). Parsing is pure; `WorkerSource` fetches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.signals.base import Datum, RoundContext, SourceReading
from dynamo_ecs.signals.discovery import SYSTEM_PORT_VARIABLE, ClusterView, ScrapeTarget, scrape_target
from dynamo_ecs.signals.prometheus_scrape import NotPrometheusTextError, scrape_bodies

ENGINE_WAITING = "vllm:num_requests_waiting"
HANDLER_QUEUE = "dynamo_work_handler_queue_depth"
INFLIGHT = "dynamo_component_inflight_requests"
GENERATE_ENDPOINT = "generate"


@dataclass(frozen=True)
class WorkerSample:
    queue_depth: float | None
    active: float | None


def parse_worker_metrics(text: str) -> WorkerSample:
    """A worker system port's ``/metrics``; `NotPrometheusTextError` when it is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    queue: float | None = None
    active: float | None = None
    families = 0
    try:
        for family in text_string_to_metric_families(text):
            families += 1
            for sample in family.samples:
                value = float(sample.value)
                if math.isnan(value):
                    continue
                if sample.name in (ENGINE_WAITING, HANDLER_QUEUE):
                    queue = (queue or 0.0) + value
                elif sample.name == INFLIGHT and sample.labels.get("dynamo_endpoint") == GENERATE_ENDPOINT:
                    active = (active or 0.0) + value
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise NotPrometheusTextError(f"not Prometheus text: {exc}") from exc
    if families == 0:
        raise NotPrometheusTextError("no Prometheus metric in the body")
    return WorkerSample(queue, active)


def worker_data(role: ServiceRole, samples: list[WorkerSample]) -> list[Datum]:
    """The service's worker metrics, summed over its workers. Pure."""
    out: list[Datum] = []
    queues = [s.queue_depth for s in samples if s.queue_depth is not None]
    if queues:
        out.append(Datum(names.WORKER_QUEUE_DEPTH, role, sum(queues)))
    active = [s.active for s in samples if s.active is not None]
    if active:
        out.append(Datum(names.WORKER_ACTIVE_REQUESTS, role, sum(active)))
    return out


@dataclass(frozen=True)
class WorkerTargets:
    targets: list[ScrapeTarget]
    problems: list[str]  # tasks counted as scrape errors without a request
    skipped: list[str]  # tasks whose definition binds no system port: not targets


def worker_targets(cluster: ClusterView | None, role: ServiceRole, port: int) -> WorkerTargets:
    """The system ``/metrics`` URL of every RUNNING task of ``role`` whose worker serves ``port``. Pure."""
    if cluster is None:
        return WorkerTargets([], [f"GPU cluster not read: no {role} worker target"], [])
    found = WorkerTargets([], [], [])
    for task in cluster.tasks.get(role, []):
        if task.system_port is None:
            found.skipped.append(
                f"{task.task_arn}: its task definition sets no {SYSTEM_PORT_VARIABLE}, so its worker "
                "serves no /metrics: its queue is not read"
            )
            continue
        if task.system_port != port:
            found.problems.append(
                f"{task.task_arn}: its worker serves /metrics on {SYSTEM_PORT_VARIABLE}={task.system_port}, "
                f"the collector reads {port} (the port the stack's security group opens to it): set "
                f"{SYSTEM_PORT_VARIABLE}={port} in the spec's worker container (docs/signals.md)"
            )
            continue
        target, problem = scrape_target(task, port)
        if target is not None:
            found.targets.append(target)
        elif problem:
            found.problems.append(problem)
    return found


class WorkerSource:
    """Reads the system port of every RUNNING task of one service.

    ``targets`` overrides discovery (tests scrape local workers); otherwise each task whose
    worker serves the service's port (`DeploymentConfig.worker_system_port`) is scraped there
    by its network mode, as the frontend is (`dynamo_ecs.signals.discovery.scrape_target`).
    """

    scrape_service: ServiceRole | None

    def __init__(
        self, config: DeploymentConfig, role: ServiceRole, targets: list[ScrapeTarget] | None = None
    ) -> None:
        self.name = f"workers_{role}"
        self.role: ServiceRole = role
        self.scrape_service = role
        self.port = config.worker_system_port(role)
        self.timeout_s = config.signals.scrape_timeout_s
        self._targets = targets

    def targets(self, context: RoundContext) -> WorkerTargets:
        if self._targets is not None:
            return WorkerTargets(list(self._targets), [], [])
        return worker_targets(context.cluster, self.role, self.port)

    def read(self, context: RoundContext, previous_state: dict[str, Any] | None) -> SourceReading:
        reading = SourceReading(self.name)
        found = self.targets(context)
        reading.notes.extend(found.skipped)
        samples: list[WorkerSample] = []
        for key, body in scrape_bodies(reading, found.targets, found.problems, self.timeout_s):
            try:
                samples.append(parse_worker_metrics(body))
            except NotPrometheusTextError as exc:
                reading.errors += 1
                reading.notes.append(f"{key}: {exc}")
        reading.data.extend(worker_data(self.role, samples))
        return reading
