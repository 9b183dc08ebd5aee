"""The demo's six steps, shared by `make demo` (narrated) and tests/e2e (asserted).

Each simulated minute runs what production runs: the GPU tasks converge (`GpuTaskAgent`),
the load model feeds the frontends' /metrics, the prefill queue and the GPU metrics; the
metrics collector's handler runs on its schedule event; the collector's breach events are
routed by EventBridge (moto) to the scaler; CloudWatch alarms are evaluated (moto stores
alarms but never evaluates them, so the demo does: datapoint above threshold -> ALARM ->
the alarm state change event); and the scaler's handler runs on its schedule event.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devtools.demo.load import PREFILL_PER_TASK, FrontendLoad, feed_frontends, frontend_load, prefill_messages
from devtools.demo.stack import CONSUMER, STREAM, LocalStack
from devtools.ecs_world import task_private_ip, task_state_change_event
from devtools.scaling_inputs import REGION, alarm_state_change_event, schedule_event
from dynamo_ecs import aws
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, ServiceRole
from dynamo_ecs.scaling.signals import TTFT_METRIC, alarm_name, signal_specs

Narrate = Callable[[str], None]
NEW_IMAGE = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.7.0"


@dataclass
class Sample:
    """One simulated minute, for the chart and the summary."""

    minute: float
    load: float
    ttft_ms: float
    desired: dict[ServiceRole, int]
    running: dict[ServiceRole, int]
    lag: int


@dataclass
class DemoResult:
    samples: list[Sample] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    reaction_s: float | None = None
    first_scale_out_trigger: str | None = None


class Scenario:
    def __init__(self, stack: LocalStack, narrate: Narrate | None = None, seed: int = 7) -> None:
        self.stack = stack
        self.say: Narrate = narrate or (lambda _: None)
        self.rng = random.Random(seed)
        self.result = DemoResult()
        self.load = 0.0
        self.last_ttft = 0.0
        self.alarm_states: dict[str, str] = {}
        self.infra_events: list[dict[str, Any]] = []
        self.alarm_events: list[dict[str, Any]] = []
        self.breach_start: float | None = None

    @property
    def config(self) -> Any:
        return self.stack.config

    def mark(self, label: str) -> None:
        self.result.marks.append((self.stack.clock.minute, label))

    def desired(self) -> dict[ServiceRole, int]:
        return {r: int(self.stack.agent.service(r)["desiredCount"]) for r in SERVICE_ROLES}

    def revisions(self) -> dict[ServiceRole, int]:
        ecs = aws.client("ecs")
        return {
            r: len(
                ecs.list_task_definitions(familyPrefix=self.config.service(r).family)["taskDefinitionArns"]
            )
            for r in SERVICE_ROLES
        }

    # -- step 1 ----------------------------------------------------------------------------

    def first_deploy(self) -> dict[str, Any]:
        stack = self.stack
        event = {
            "RequestType": "Create",
            "ResponseURL": stack.cloudformation.url,
            "StackId": f"arn:aws:cloudformation:{REGION}:123456789012:stack/dynamo/demo",
            "RequestId": "demo-create",
            "ResourceType": "Custom::DynamoGpuServices",
            "LogicalResourceId": "GpuServices",
            "ResourceProperties": stack.bootstrap_properties(),
        }
        stack.invoke("bootstrap", event)
        answer = stack.cloudformation.answers[-1]
        stack.agent.tick(immediate=True)
        workers = stack.register_workers()
        infra_ip = task_private_ip(stack.infra_task)
        self.mark("first deploy")
        self.say(
            f"[bold]1. first deploy[/]: CloudFormation custom resource answered {answer['Status']}; "
            f"both GPU services created on etcd/NATS at {infra_ip}"
        )
        self.say(
            f"   workers registered at {workers['frontend']} "
            f"(real etcd behind that address: {stack.etcd_keys()} keys)"
        )
        step = {
            "status": answer["Status"],
            "infra_ip": infra_ip,
            "etcd": workers,
            "revisions": self.revisions(),
        }
        self.result.steps["first_deploy"] = step
        return step

    # -- step 2 ----------------------------------------------------------------------------

    def replace_infra(self) -> dict[str, Any]:
        stack, world = self.stack, self.stack.world
        old = stack.infra_task
        before = self.revisions()
        new = world.replace_infra_task(old["taskArn"])
        stack.infra_task = new
        stack.wipe_etcd()
        new_ip = stack.route_infra(new)
        stopped = world.describe_task(self.config.infra.cluster, old["taskArn"])
        self.infra_events = [
            task_state_change_event(new, version=2, region=REGION, event_id="infra-new-running"),
            task_state_change_event(stopped, version=3, region=REGION, event_id="infra-old-stopped"),
        ]
        self.say(
            f"[bold]2. infra task replaced[/]: {task_private_ip(old)} -> {new_ip}; the new etcd is empty "
            f"({stack.etcd_keys()} keys)"
        )
        results = [stack.invoke("infra_watcher", e) for e in self.infra_events]
        notes = stack.agent.tick()
        workers = stack.register_workers()
        after = self.revisions()
        self.mark("infra replaced")
        for result in results:
            self.say(f"   infra_watcher: {result['status']} ({result['reason']})")
        self.say(f"   new revisions {before} -> {after}; {'; '.join(notes)}")
        self.say(f"   workers re-registered at {workers['frontend']} ({stack.etcd_keys()} keys)")
        step = {
            "new_ip": new_ip,
            "statuses": [r["status"] for r in results],
            "before": before,
            "after": after,
            "etcd": workers,
        }
        self.result.steps["replace_infra"] = step
        return step

    # -- steps 3 and 4: one simulated minute -------------------------------------------------

    def minute(self, load: float) -> None:
        stack = self.stack
        if stack.stop_requested:
            raise KeyboardInterrupt
        stack.clock.now += 60
        self.load = load
        notes = stack.agent.tick()
        for note in notes:
            self.say(f"   [dim]t+{stack.clock.minute:4.0f} min[/] ECS: {note}")
        running = {r: len(stack.agent.running(r)) for r in SERVICE_ROLES}
        shape = frontend_load(load, running["frontend"])
        self.last_ttft = shape.ttft_ms
        lag = asyncio.run(self._prefill_minute(prefill_messages(load), running["prefill"] * PREFILL_PER_TASK))
        servers = [t.server for t in stack.agent.running("frontend") if t.server]
        feed_frontends(servers, shape, self.rng, prefill_backlog=lag)
        self._publish_gpu_metrics(shape, running)

        stack.invoke("metrics_collector", schedule_event(stack.clock.now, rule="dynamo-collector"))
        published = self._published_this_minute()
        stack.clock.now += 1  # the collector's own run time
        for event in stack.drain_breach_events():
            self._scale("breach", event)
        self._evaluate_alarms(published)
        stack.clock.now += 1
        self._scale("schedule", schedule_event(stack.clock.now, rule="dynamo-scaler-schedule"))
        stack.clock.now -= 2
        # The TTFT statistic the frontend's target is set on (the mean by default)
        ttft = published.get((TTFT_METRIC[stack.config.frontend.targets.ttft_statistic], "frontend"))
        self.result.samples.append(
            Sample(
                stack.clock.minute,
                load,
                self.last_ttft if ttft is None else ttft,
                self.desired(),
                running,
                lag,
            )
        )

    def _published_this_minute(self) -> dict[tuple[str, str], float | None]:
        """Each scaling signal's datapoint the collector just published (None: none), read once."""
        sources = {(s.metric, s.source_service) for r in SERVICE_ROLES for s in signal_specs(self.config, r)}
        return {source: self._latest(*source) for source in sources}

    async def _prefill_minute(self, published: int, capacity: int) -> int:
        """Publish this minute's prefill work; the running prefill tasks take and ack what they can."""
        import nats

        connection = await nats.connect(self.stack.nats.url)
        jetstream = connection.jetstream()
        for i in range(published):
            await jetstream.publish(f"{STREAM}.request", f"prefill {i}".encode())
        if capacity:
            subscription = await jetstream.pull_subscribe(f"{STREAM}.*", durable=CONSUMER)
            try:
                for message in await subscription.fetch(capacity, timeout=0.5):
                    await message.ack_sync()
            except TimeoutError:
                pass
        info = await jetstream.consumer_info(STREAM, CONSUMER)
        await connection.close()
        return int(info.num_pending + info.num_ack_pending)

    def _publish_gpu_metrics(self, shape: FrontendLoad, running: dict[ServiceRole, int]) -> None:
        cloudwatch = aws.client("cloudwatch")
        prefill_util = min(100.0, 100.0 * self.load * 2 / max(running["prefill"] * PREFILL_PER_TASK, 1))
        for task in self.stack.agent.tasks:
            ec2_id = self.stack.world.gpu_instances[task.instance_index]["ec2InstanceId"]
            value = min(100.0, shape.utilization * 100) if task.role == "frontend" else prefill_util
            cloudwatch.put_metric_data(
                Namespace=self.config.signals.gpu_metric_namespace,
                MetricData=[
                    {
                        "MetricName": self.config.signals.gpu_metric_name,
                        "Dimensions": [{"Name": "InstanceId", "Value": ec2_id}],
                        "Timestamp": datetime.fromtimestamp(self.stack.clock.now - 5, UTC),
                        "Value": value,
                        "Unit": "Percent",
                    }
                ],
            )

    def _evaluate_alarms(self, published: dict[tuple[str, str], float | None]) -> None:
        """What CloudWatch would do with the datapoints just published (moto never evaluates)."""
        cloudwatch = aws.client("cloudwatch")
        for role in SERVICE_ROLES:
            for spec in signal_specs(self.config, role):
                name = alarm_name(self.config.deployment, role, spec.name)
                latest = published[(spec.metric, spec.source_service)]
                state = "ALARM" if latest is not None and latest > spec.target else "OK"
                previous = self.alarm_states.get(name, "OK")
                if state == previous:
                    continue
                self.alarm_states[name] = state
                cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="demo evaluation")
                event = alarm_state_change_event(name, state, self.stack.clock.now, previous=previous)
                if state == "ALARM":
                    self.alarm_events.append(event)
                    self._scale("alarm", event)

    def _latest(self, metric: str, service: str) -> float | None:
        now = self.stack.clock.now
        answer = aws.client("cloudwatch").get_metric_statistics(
            Namespace=self.config.signals.namespace,
            MetricName=metric,
            Dimensions=[
                {"Name": names.DIMENSION_DEPLOYMENT, "Value": self.config.deployment},
                {"Name": names.DIMENSION_SERVICE, "Value": service},
            ],
            StartTime=datetime.fromtimestamp(now - 60, UTC),
            EndTime=datetime.fromtimestamp(now + 60, UTC),
            Period=60,
            Statistics=["Average"],
        )
        points = sorted(answer.get("Datapoints", []), key=lambda p: p["Timestamp"])
        return float(points[-1]["Average"]) if points else None

    def _scale(self, why: str, event: dict[str, Any]) -> dict[str, Any]:
        result = self.stack.invoke("scaler", event)
        if result.get("status") != "applied":
            return result
        for role, service in result["services"].items():
            if service["action"] == "none":
                continue
            if (
                service["action"] == "scale_out"
                and self.result.reaction_s is None
                and self.breach_start is not None
            ):
                self.result.reaction_s = self.stack.clock.now - self.breach_start
                self.result.first_scale_out_trigger = why
            self.say(
                f"   [dim]t+{self.stack.clock.minute:4.0f} min[/] scaler ({why}): [bold]{role} "
                f"{service['from']} -> {service['to']}[/] because {service['reason']}"
            )
        return result

    def load_phase(self, label: str, load: float, minutes: int) -> dict[str, Any]:
        before = self.desired()
        self.mark(label)
        if load > self.load and self.breach_start is None:
            # The load steps up now: the first window that breaches starts here.
            self.breach_start = self.stack.clock.now
        self.say(f"[bold]{label}[/]: {load:g} requests/s for {minutes} simulated minutes")
        for _ in range(minutes):
            self.minute(load)
        after = self.desired()
        self.say(f"   desired counts {before} -> {after}")
        return {"before": before, "after": after}

    # -- step 5 ----------------------------------------------------------------------------

    def storm(self) -> dict[str, Any]:
        """Duplicates and out-of-order copies of every event so far, ten at once."""
        before = (self.revisions(), self.desired())
        old_first = list(reversed(self.infra_events))
        events = [("infra_watcher", e) for e in old_first * 3] + [
            ("scaler", e) for e in self.alarm_events[-3:] * 2
        ]
        results: list[dict[str, Any]] = []
        lock = threading.Lock()

        def deliver(function: str, event: dict[str, Any]) -> None:
            result = self.stack.invoke(function, event)
            with lock:
                results.append(result)

        threads = [threading.Thread(target=deliver, args=item) for item in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = (self.revisions(), self.desired())
        self.mark("event storm")
        statuses = sorted({str(r.get("status")) for r in results})
        self.say(
            f"[bold]5. event storm[/]: {len(events)} duplicate and out-of-order events at once -> "
            f"statuses {statuses}; revisions {before[0]} -> {after[0]}, desired {before[1]} -> {after[1]}"
        )
        step = {"events": len(events), "statuses": statuses, "before": before, "after": after}
        self.result.steps["storm"] = step
        return step

    # -- step 6 ----------------------------------------------------------------------------

    def redeploy(self) -> dict[str, Any]:
        before = self.revisions()
        preview = self.stack.invoke("redeploy", {"image": NEW_IMAGE, "dry_run": True})
        after_dry = self.revisions()
        changed = preview.get("changes", [])
        self.say(f"[bold]6. redeploy {NEW_IMAGE}[/], first as a dry run: {preview['status']}, would change:")
        for change in changed:
            for path, diff in list(change.get("diff", {}).items())[:2]:
                self.say(f"   {change['service']}: {path}: {diff['old']} -> {diff['new']}")
        applied = self.stack.invoke("redeploy", {"image": NEW_IMAGE})
        notes = self.stack.agent.tick()
        self.stack.register_workers()
        after = self.revisions()
        self.mark("redeploy")
        self.say(f"   then for real: {applied['status']}; revisions {before} -> {after}; {'; '.join(notes)}")
        step = {
            "dry_run_status": preview["status"],
            "after_dry_run": after_dry,
            "before": before,
            "status": applied["status"],
            "after": after,
        }
        self.result.steps["redeploy"] = step
        return step

    def run_all(self) -> DemoResult:
        self.first_deploy()
        self.minute(3.0)
        self.replace_infra()
        for _ in range(2):
            self.minute(3.0)
        self.result.steps["load_rises"] = self.load_phase("3. load rises", 14.0, 6)
        self.result.steps["load_falls"] = self.load_phase("4. load falls", 3.0, 12)
        self.storm()
        self.minute(3.0)
        self.redeploy()
        self.minute(3.0)
        return self.result
