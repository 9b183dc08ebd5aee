"""The demo's steps, shared by `make demo` (narrated) and tests/e2e (asserted), on real processes.

Two parts, each on a `LocalStack` of its own:

- the main part (`Scenario.run_main`) on template.yaml's default layout, the three-member
  etcd + NATS tier with the planes on: the first deploy, the planes refusing a client without
  credentials, a member replaced under load, the load rising and falling, an event storm, a
  redeploy;
- the single-task part (`Scenario.run_single_task`) on ``InfraMembers`` 1, the development
  layout (unauthenticated): the infra task replaced with the operator and without it, the
  failure the operator's IP re-resolution exists for.

Every step runs what production runs, on the real clock: the bootstrap function creates the
GPU services; the local ECS (`devtools.local_ecs`) starts the real Dynamo frontend and
workers from the task definitions the operator registered, with their ECS secrets; the
infra tier's real etcd and nats-server lose a member or are replaced; real chat completions
go to the real frontends. Every `TICK_S` during a load phase, once the collector's round of
that tick is done (`CollectorSchedule.wait_for_round`): ECS converges, the collector's
breach events reach the scaler through the stack's own EventBridge rule (an SQS target, as
moto cannot invoke Lambda), CloudWatch alarms are evaluated on the previous round's
datapoints (moto stores them but never evaluates: the demo does) and the scaler runs on its
schedule event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devtools.demo.stack import LocalStack
from devtools.ecs_world import task_private_ip, task_state_change_event
from devtools.local_ecs.client import chat, first_success
from devtools.local_ecs.deployment import MODEL, REGION
from devtools.local_ecs.infra import stranger_attempts
from devtools.local_ecs.load import LoadRun
from devtools.local_ecs.member_loss import lose_member_under_load
from devtools.local_ecs.outage import replace_infra_and_measure
from devtools.scaling_inputs import alarm_state_change_event, schedule_event
from dynamo_ecs import aws
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, ServiceRole
from dynamo_ecs.planes.gpu_credentials import DYNAMO_SECRETS
from dynamo_ecs.scaling.signals import alarm_name, signal_specs

Narrate = Callable[[str], None]
NEW_MODEL = "Qwen/Qwen3-8B"
TICK_S = 10.0
SCHEDULE_EVERY_TICKS = 2  # the scaler's schedule: every 20 s here (one minute in the stack)
SERVE_TIMEOUT_S = 90.0
OUTAGE_BOUND_S = 60.0  # how long the demo lets the deployment run without the operator
# A prompt of 1000 tokens of the tiny model's vocabulary: prefill work the mocker models.
PROMPT = " ".join(f"w{i % 400}" for i in range(1000))
HIGH_LOAD_PER_S, LOW_LOAD_PER_S = 6.0, 1.5
HIGH_LOAD_S, LOW_LOAD_S = 50.0, 150.0
# How long a tick waits for the collector's round (one every TICK_S): a starved collector
# thread delays the tick, never reorders it.
ROUND_WAIT_S = 3 * TICK_S


@dataclass
class Sample:
    """One tick of a load phase, for the chart and the summary."""

    t_s: float
    load: float
    ttft_ms: float | None
    desired: dict[ServiceRole, int]
    running: dict[ServiceRole, int]


@dataclass
class DemoResult:
    samples: list[Sample] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    outages: list[tuple[float, float | None, str]] = field(default_factory=list)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    reaction_s: float | None = None
    first_scale_out_trigger: str | None = None
    load_errors: int = 0
    load_completed: int = 0
    ticks_without_round: int = 0  # ticks that gave up waiting for the collector (ROUND_WAIT_S)


class Scenario:
    def __init__(self, stack: LocalStack, narrate: Narrate | None = None) -> None:
        self.stack = stack
        self.say: Narrate = narrate or (lambda _: None)
        self.result = DemoResult()
        self.started = time.monotonic()
        self.load = 0.0
        self.alarm_states: dict[str, str] = {}
        self.infra_events: list[dict[str, Any]] = []
        self.alarm_events: list[dict[str, Any]] = []
        self.breach_start: float | None = None
        self.ticks = 0
        self.previous_published: dict[tuple[str, str], float | None] = {}
        self.collector: CollectorSchedule | None = None  # running during the load phases
        self.rounds_seen = 0

    @property
    def config(self) -> Any:
        return self.stack.config

    @property
    def now_s(self) -> float:
        return time.monotonic() - self.started

    def mark(self, label: str) -> None:
        self.result.marks.append((self.now_s, label))

    def desired(self) -> dict[ServiceRole, int]:
        return {r: int(self.stack.runner.service(r)["desiredCount"]) for r in SERVICE_ROLES}

    def running(self) -> dict[ServiceRole, int]:
        return {r: len(self.stack.runner.running(r)) for r in SERVICE_ROLES}

    def revisions(self) -> dict[ServiceRole, int]:
        ecs = aws.client("ecs")
        return {
            r: len(
                ecs.list_task_definitions(familyPrefix=self.config.service(r).family)["taskDefinitionArns"]
            )
            for r in SERVICE_ROLES
        }

    def check_interrupt(self) -> None:
        if self.stack.stop_requested:
            raise KeyboardInterrupt

    def wait_for_service(self, model: str = MODEL) -> float | None:
        """Seconds until a frontend task answers a chat completion (None: not within the bound)."""
        begin = time.monotonic()
        deployment = self.stack.deployment
        while time.monotonic() - begin < SERVE_TIMEOUT_S:
            self.check_interrupt()
            self.stack.runner.tick()
            urls = deployment.frontend_urls()
            if urls and first_success(urls[0], model, 2.0, between_s=0.2):
                return time.monotonic() - begin
            time.sleep(0.3)
        return None

    # -- step 1 ----------------------------------------------------------------------------

    def first_deploy(self, label: str = "1. first deploy") -> dict[str, Any]:
        stack = self.stack
        event = {
            "RequestType": "Create",
            "ResponseURL": stack.cloudformation.url,
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/dynamo/demo",
            "RequestId": "demo-create",
            "ResourceType": "Custom::DynamoGpuServices",
            "LogicalResourceId": "GpuServices",
            "ResourceProperties": stack.bootstrap_properties(),
        }
        stack.invoke("bootstrap", event)
        answer = stack.cloudformation.answers[-1]
        stack.runner.tick()
        serving_s = self.wait_for_service()
        self.mark("first deploy")
        planes = self.gpu_planes()
        if stack.three_members:
            where = (
                f"the three members' names ({planes['etcd_endpoints'].count(',') + 1} etcd URLs, "
                f"NATS seed {planes['nats_server']})"
            )
        else:
            infra_ip = task_private_ip(stack.single_task.infra_task)
            where = (
                f"etcd/NATS at {infra_ip} (real etcd and nats-server at {stack.single_task.infra.address})"
            )
        tasks = ", ".join(f"{t.role} on {t.address}" for t in stack.runner.tasks)
        self.say(
            f"[bold]{label}[/]: CloudFormation custom resource answered {answer['Status']}; both GPU "
            f"services created on {where}"
        )
        self.say(f"   real Dynamo processes: {tasks}")
        self.say(f"   first chat completion through the frontend after {_seconds(serving_s)}")
        step = {
            "status": answer["Status"],
            "serving_s": serving_s,
            "revisions": self.revisions(),
            **planes,
        }
        self.result.steps["first_deploy"] = step
        return step

    def gpu_planes(self) -> dict[str, Any]:
        """What the frontend service's task definition gives its Dynamo container: the URLs,
        the names of its ECS secrets, and any credential set as a plain value (none should be)."""
        ecs = aws.client("ecs")
        service = self.stack.runner.service("frontend")
        definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        dynamo = next(
            c
            for c in definition["containerDefinitions"]
            if any(e["name"] == "ETCD_ENDPOINTS" for e in c.get("environment", []))
        )
        env = {e["name"]: e["value"] for e in dynamo.get("environment", [])}
        return {
            "etcd_endpoints": env["ETCD_ENDPOINTS"],
            "nats_server": env["NATS_SERVER"],
            "secrets": sorted(s["name"] for s in dynamo.get("secrets") or []),
            "secret_sources": sorted({s["valueFrom"].split(":")[6] for s in dynamo.get("secrets") or []}),
            "plain_credentials": sorted(set(env) & set(DYNAMO_SECRETS)),
        }

    # -- step 2: the planes (three-member tier) -------------------------------------------

    def planes(self) -> dict[str, Any]:
        """What the planes are, and a client without credentials refused by the running tier."""
        first = self.result.steps.get("first_deploy") or self.gpu_planes()
        self.say(
            "[bold]2. the planes[/]: etcd serves only mutual TLS, and with auth on: Dynamo's processes "
            "present the client certificate whose CN is the etcd user [bold]dynamo[/] (read-write on "
            "v1/ only); NATS serves TLS, and user dynamo with its password; the certificates and the "
            "password are made by the stack and reach the GPU tasks as ECS secrets "
            f"({', '.join(first['secrets'])} from {', '.join(first['secret_sources'])}), none of them "
            "in the task definition"
        )
        attempts = stranger_attempts(self.stack.tier.tier)
        self.say(
            "   against member 0: an etcd write over TLS without a client certificate: "
            f"{'ACCEPTED' if attempts.etcd_write_accepted else 'refused at the handshake'} "
            f"(etcdctl: {attempts.etcd_write[:90]}); "
            f"the key still holds Dynamo's value: {attempts.etcd_value_kept}"
        )
        self.say(
            "   a NATS connection over TLS without user and password: "
            f"{'ACCEPTED' if attempts.nats_connect_accepted else 'refused'} ({attempts.nats_connect[:60]})"
        )
        step = {
            "etcd_write": attempts.etcd_write,
            "etcd_write_accepted": attempts.etcd_write_accepted,
            "etcd_value_kept": attempts.etcd_value_kept,
            "nats_connect": attempts.nats_connect,
            "nats_connect_accepted": attempts.nats_connect_accepted,
        }
        self.result.steps["planes"] = step
        return step

    # -- step 3: a member replaced under load (three-member tier) ------------------------

    def replace_member(self, index: int = 0) -> dict[str, Any]:
        """Member ``index`` (an etcd member and the NATS seed for 0) stops under load; its
        service starts a new task, which rejoins; its state changes reach infra_watcher."""
        before = self.revisions()
        begin = self.now_s
        self.mark(f"member {index} lost")
        loss = lose_member_under_load(self.stack.tier, index, infra_watcher=self._infra_watcher)
        after = self.revisions()
        rejoin = "never" if loss.rejoin_s is None else f"{loss.rejoin_s:.1f} s after the stop"
        self.say(
            f"[bold]3. member {index} replaced under load[/] (an etcd member and the NATS seed; "
            f"{loss.requests} requests at 3/s meanwhile): {loss.failed} failed; {loss.dynamo_exits} Dynamo "
            f"processes exited; {loss.gpu_tasks_started} GPU tasks started again; the replacement rejoined "
            f"{rejoin}"
        )
        self.say(
            f"   infra_watcher on the stop and the start: {loss.watcher_statuses}; the GPU task definitions "
            f"name the members, which keep their names, so nothing rolls: revisions {before} -> {after}"
        )
        step = {
            "requests": loss.requests,
            "failed": loss.failed,
            "dynamo_exits": loss.dynamo_exits,
            "gpu_tasks_started": loss.gpu_tasks_started,
            "rejoin_s": loss.rejoin_s,
            "statuses": loss.watcher_statuses,
            "before": before,
            "after": after,
            "began_s": begin,
        }
        self.result.steps["replace_member"] = step
        return step

    # -- the single-task part: the infra task replaced (InfraMembers 1) ---------------------

    def _infra_watcher(self, event: dict[str, Any]) -> dict[str, Any]:
        self.infra_events.append(event)
        return self.stack.invoke("infra_watcher", event)

    def deliver_late_infra_event(self) -> float | None:
        """The held-back state change of the running infra task reaches infra_watcher; seconds to serving."""
        deployment = self.stack.single_task
        event = task_state_change_event(
            deployment.infra_task, version=2, region=REGION, event_id="infra-late-running"
        )
        self._infra_watcher(event)
        return self.wait_for_service()

    def replace_infra_with_operator(self) -> dict[str, Any]:
        before = self.revisions()
        begin = self.now_s
        self.mark("infra replaced")
        result = replace_infra_and_measure(self.stack.single_task, self._infra_watcher, SERVE_TIMEOUT_S)
        end = None if result.outage_s is None else begin + result.outage_s
        self.result.outages.append((begin, end, "outage (operator)"))
        after = self.revisions()
        self.say(
            f"[bold]8. infra task replaced[/] -> {self.stack.single_task.infra.address} (a new, empty etcd); "
            f"infra_watcher: {result.watcher_statuses}; revisions {before} -> {after}"
        )
        self.say(
            f"   completions succeed again on the new address after [bold]{_seconds(result.outage_s)}[/]"
        )
        step = {
            "outage_s": result.outage_s,
            "statuses": result.watcher_statuses,
            "before": before,
            "after": after,
        }
        self.result.steps["replace_infra"] = step
        return step

    def replace_infra_without_operator(self) -> dict[str, Any]:
        """The same replacement with the operator's events held back: what users live with today."""
        before = self.revisions()
        begin = self.now_s
        self.mark("infra replaced, no operator")
        result = replace_infra_and_measure(self.stack.single_task, None, OUTAGE_BOUND_S)
        self.say(
            f"[bold]9. infra task replaced again, operator held back for {OUTAGE_BOUND_S:.0f} s[/]: "
            f"old tasks served until {_seconds(result.old_tasks_served_until_s)}, then "
            f"{len(result.stopped_reasons)} task(s) stopped and ECS started {result.tasks_started} "
            f"replacement(s) on the same revisions; completions on the new address: "
            f"{'none' if result.outage_s is None else _seconds(result.outage_s)}"
        )
        for reason in sorted(set(result.stopped_reasons))[:2]:
            self.say(f"   stoppedReason: {reason}")
        # Then the state change reaches the operator after all (EventBridge retries for hours)
        self.mark("operator gets the events")
        recovery = self.deliver_late_infra_event()
        self.result.outages.append(
            (begin, None if recovery is None else self.now_s, "outage (events held back)")
        )
        self.say(
            f"   the events delivered late: infra_watcher rolls, serving again after {_seconds(recovery)}"
        )
        step = {
            "without_operator_outage_s": result.outage_s,
            "bound_s": OUTAGE_BOUND_S,
            "stopped_reasons": result.stopped_reasons,
            "tasks_started": result.tasks_started,
            "recovered_after_events_s": recovery,
            "before": before,
            "after": self.revisions(),
        }
        self.result.steps["replace_infra_without_operator"] = step
        return step

    # -- steps 4 and 5: load ---------------------------------------------------------------

    def tick(self) -> None:
        """What production does every `TICK_S`: ECS converges, breach events and alarms reach
        the scaler; once a minute, the scaler's schedule. The collector runs on its own
        schedule meanwhile (`CollectorSchedule`), as its Lambda function does; a tick first
        waits for the collector's round of this tick, so the round's breach event is always
        drained before the alarms are evaluated on the previous round's datapoints, however
        late a starved collector thread gets to it."""
        self.check_interrupt()
        if self.collector is not None:
            seen = self.collector.wait_for_round(self.rounds_seen, ROUND_WAIT_S)
            if seen == self.rounds_seen:
                self.result.ticks_without_round += 1
            self.rounds_seen = seen
            self.check_interrupt()
        stack = self.stack
        for note in stack.runner.tick():
            self.say(f"   [dim]t+{self.now_s:5.0f} s[/] ECS: {note}")
        published = self._published()
        for event in stack.drain_breach_events():
            self._scale("breach", event)
        now = time.time()
        # CloudWatch evaluates a period once it has closed: the alarms see the previous tick's data.
        self._evaluate_alarms(self.previous_published, now)
        self.previous_published = published
        self.ticks += 1
        if self.ticks % SCHEDULE_EVERY_TICKS == 0:
            self._scale("schedule", schedule_event(now, rule="dynamo-scaler-schedule"))
        ttft = published.get((names.TTFT_P90, "frontend"))
        self.result.samples.append(Sample(self.now_s, self.load, ttft, self.desired(), self.running()))

    def _published(self) -> dict[tuple[str, str], float | None]:
        """Each scaling signal's datapoint the collector just published (None: none), read once."""
        sources = {(s.metric, s.source_service) for r in SERVICE_ROLES for s in signal_specs(self.config, r)}
        sources.add((names.TTFT_P90, "frontend"))
        return {source: self._latest(*source) for source in sources}

    def _latest(self, metric: str, service: str) -> float | None:
        period = self.config.scaling.metric_period_s
        now = time.time()
        answer = aws.client("cloudwatch").get_metric_statistics(
            Namespace=self.config.signals.namespace,
            MetricName=metric,
            Dimensions=[
                {"Name": names.DIMENSION_DEPLOYMENT, "Value": self.config.deployment},
                {"Name": names.DIMENSION_SERVICE, "Value": service},
            ],
            StartTime=datetime.fromtimestamp(now - 2 * TICK_S, UTC),
            EndTime=datetime.fromtimestamp(now + period, UTC),
            Period=period,
            Statistics=["Average"],
        )
        points = sorted(answer.get("Datapoints", []), key=lambda p: p["Timestamp"])
        return float(points[-1]["Average"]) if points else None

    def _evaluate_alarms(self, published: dict[tuple[str, str], float | None], now: float) -> None:
        """What CloudWatch would do with the datapoints just published (moto never evaluates)."""
        cloudwatch = aws.client("cloudwatch")
        for role in SERVICE_ROLES:
            for spec in signal_specs(self.config, role):
                name = alarm_name(self.config.deployment, role, spec.name)
                latest = published.get((spec.metric, spec.source_service))
                state = "ALARM" if latest is not None and latest > spec.target else "OK"
                previous = self.alarm_states.get(name, "OK")
                if state == previous:
                    continue
                self.alarm_states[name] = state
                cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="demo evaluation")
                event = alarm_state_change_event(name, state, now, previous=previous)
                if state == "ALARM":
                    self.alarm_events.append(event)
                    self._scale("alarm", event)

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
                self.result.reaction_s = time.monotonic() - self.breach_start
                self.result.first_scale_out_trigger = why
            self.say(
                f"   [dim]t+{self.now_s:5.0f} s[/] scaler ({why}): [bold]{role} "
                f"{service['from']} -> {service['to']}[/] because {service['reason']}"
            )
        return result

    def load_phase(self, label: str, rate: float, seconds: float, load: LoadRun) -> dict[str, Any]:
        before = self.desired()
        began = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as the decision log's `at`
        self.mark(label)
        if rate > self.load and self.breach_start is None:
            self.breach_start = time.monotonic()
        self.load = rate
        load.set_rate(rate)
        first = len(self.result.samples)
        self.say(
            f"[bold]{label}[/]: {rate:g} chat completions/s "
            f"({len(PROMPT.split())}-token prompts) for {seconds:.0f} s"
        )
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            tick_end = time.monotonic() + TICK_S
            self.tick()
            time.sleep(max(0.0, tick_end - time.monotonic()))
        after = self.desired()
        ttfts = [s.ttft_ms for s in self.result.samples[first:] if s.ttft_ms is not None]
        self.say(f"   desired counts {before} -> {after}; TTFT p90 (published) {_ms(ttfts)}")
        return {"before": before, "after": after, "ttft_ms": ttfts, "began": began}

    def load_phases(self) -> None:
        load = LoadRun(self.stack.deployment.frontend_urls, MODEL, 0.0, PROMPT, timeout_s=15.0).start(
            HIGH_LOAD_S + LOW_LOAD_S + 60
        )
        collector = CollectorSchedule(self.stack).start()
        self.collector, self.rounds_seen = collector, 0
        try:
            self.result.steps["load_rises"] = self.load_phase(
                "4. load rises", HIGH_LOAD_PER_S, HIGH_LOAD_S, load
            )
            self.result.steps["load_falls"] = self.load_phase(
                "5. load falls", LOW_LOAD_PER_S, LOW_LOAD_S, load
            )
        finally:
            self.collector = None
            collector.stop()
            load.stop()
        self.result.load_errors, self.result.load_completed = load.errors(), load.completed()
        self.say(f"   load: {load.completed()} completions, {load.errors()} errors")
        if self.result.ticks_without_round:
            self.say(
                f"   {self.result.ticks_without_round} tick(s) gave up waiting for the collector's round"
            )

    # -- step 6 ----------------------------------------------------------------------------

    def storm(self) -> dict[str, Any]:
        """Duplicates and out-of-order copies of every event so far, at once."""
        before = (self.revisions(), self.desired())
        old_first = list(reversed(self.infra_events))
        events = [("infra_watcher", e) for e in old_first * 2] + [
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
            f"[bold]6. event storm[/]: {len(events)} duplicate and out-of-order events at once -> "
            f"statuses {statuses}; revisions {before[0]} -> {after[0]}, desired {before[1]} -> {after[1]}"
        )
        step = {"events": len(events), "statuses": statuses, "before": before, "after": after}
        self.result.steps["storm"] = step
        return step

    # -- step 7 ----------------------------------------------------------------------------

    def redeploy(self) -> dict[str, Any]:
        before = self.revisions()
        preview = self.stack.invoke("redeploy", {"model": NEW_MODEL, "dry_run": True})
        after_dry = self.revisions()
        self.say(
            f"[bold]7. redeploy --model {NEW_MODEL}[/], first as a dry run: {preview['status']}, "
            "would change:"
        )
        for change in preview.get("changes", []):
            for path, diff in list(change.get("diff", {}).items())[:1]:
                self.say(f"   {change['service']}: {path}: ...{str(diff['new'])[-90:]}")
        applied = self.stack.invoke("redeploy", {"model": NEW_MODEL})
        self.mark("redeploy")
        serving_s = self.wait_for_service(NEW_MODEL)
        after = self.revisions()
        old_model = chat(self.stack.deployment.frontend_url(), MODEL).status if self.stack.runner.tasks else 0
        self.say(
            f"   then for real: {applied['status']}; revisions {before} -> {after}; the new processes serve "
            f"{NEW_MODEL} after {_seconds(serving_s)} (the old name now answers {old_model})"
        )
        step = {
            "dry_run_status": preview["status"],
            "after_dry_run": after_dry,
            "before": before,
            "status": applied["status"],
            "after": after,
            "serving_s": serving_s,
            "old_model_status": old_model,
        }
        self.result.steps["redeploy"] = step
        return step

    def run_main(self) -> DemoResult:
        """The main part, on the three-member tier with the planes on (template.yaml's default)."""
        if not self.stack.three_members:
            raise RuntimeError("the main part runs on the three-member tier (InfraMembers 3)")
        self.first_deploy()
        self.planes()
        self.replace_member()
        self.load_phases()
        self.storm()
        self.redeploy()
        return self.result

    def run_single_task(self) -> DemoResult:
        """The single-task part (InfraMembers 1): the infra task replaced, with and without the operator."""
        if self.stack.three_members:
            raise RuntimeError("the single-task part runs on InfraMembers 1")
        self.first_deploy("single task: first deploy")
        self.replace_infra_with_operator()
        self.replace_infra_without_operator()
        return self.result


class CollectorSchedule:
    """The collector's one-minute schedule rule: an invocation a minute, each taking its
    ``signals.samples_per_invocation`` rounds (10 s apart with the demo's config).

    Each round's end (its datapoints published and its breach event sent) is counted: the
    collector the handler builds is wrapped, its code and timing unchanged, so that a tick can
    wait for the round (`wait_for_round`) instead of racing the collector's thread.
    """

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rounds = 0
        self._round_done = threading.Condition()
        self._module: Any = stack.handlers["metrics_collector"]  # the handler module, as Lambda loads it
        self._build: Callable[[Any], Any] = self._module.default_collector

    def start(self) -> CollectorSchedule:
        self._module.default_collector = self._observed
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._round_done:
            self._round_done.notify_all()
        self._thread.join(timeout=90)
        self._module.default_collector = self._build

    @property
    def rounds(self) -> int:
        with self._round_done:
            return self._rounds

    def wait_for_round(self, seen: int, timeout_s: float) -> int:
        """Block until more than ``seen`` rounds have ended (or ``timeout_s``); the rounds ended."""
        with self._round_done:
            self._round_done.wait_for(lambda: self._rounds > seen or self._stop.is_set(), timeout_s)
            return self._rounds

    def _observed(self, config: Any) -> Any:
        collector = self._build(config)
        collect_round = collector.collect_round

        def counted_round(cluster: Any) -> Any:
            try:
                return collect_round(cluster)
            finally:
                with self._round_done:
                    self._rounds += 1
                    self._round_done.notify_all()

        collector.collect_round = counted_round
        return collector

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.stack.invoke("metrics_collector", schedule_event(time.time(), rule="dynamo-collector"))
            self._stop.wait(max(0.0, 60.0 - (time.monotonic() - began)))


def _seconds(value: float | None) -> str:
    return "never (within the bound)" if value is None else f"{value:.1f} s"


def _ms(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{min(values):.0f}..{max(values):.0f} ms, last {values[-1]:.0f} ms"
