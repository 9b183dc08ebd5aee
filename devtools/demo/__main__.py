"""`make demo`: the operator's loop on template.yaml's default layout (three etcd + NATS
members, TLS and authentication on), with a live narration, a summary table and a PNG
timeline; then the single-task part on ``InfraMembers`` 1, the unauthenticated development
layout, where the infra task replaced shows the operator's IP re-resolution
(``--skip-single-task``: not), and both infra losses side by side.

Usage: ``python -m devtools.demo [--chart PATH] [--skip-single-task]``. Every process it
starts (moto server, etcd, nats-server, the Dynamo frontends and workers) is stopped at the
end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from devtools.demo.chart import write_chart
from devtools.demo.scenario import DemoResult, Scenario
from devtools.demo.stack import LocalStack
from devtools.iam_check import enforce as iam_check
from dynamo_ecs import aws
from dynamo_ecs.metric_names import ETCD_MEMBERS_HEALTHY, SERVICE_INFRA
from dynamo_ecs.observability import logger
from dynamo_ecs.signals.publish import metric_stat
from dynamo_ecs.state import StateStore


def summary(console: Console, scenario: Scenario, result: DemoResult, elapsed: float) -> None:
    config = scenario.config
    decisions = StateStore(config.state_table, config.deployment).decisions(limit=1000)
    scaling = [d for d in decisions if d["kind"] == "scaling"]
    actions = [
        (role, s["action"]) for d in scaling for role, s in d["services"].items() if s["action"] != "none"
    ]
    table = Table(title="summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row(
        "endpoint rollouts (decision log)", str(sum(1 for d in decisions if d["kind"] == "endpoints"))
    )
    for role in ("frontend", "prefill"):
        table.add_row(
            f"{role} scale-outs / scale-ins",
            f"{actions.count((role, 'scale_out'))} / {actions.count((role, 'scale_in'))}",
        )
    table.add_row("scaling decisions logged (no change included)", str(len(scaling)))
    table.add_row("task definition revisions (frontend, prefill)", str(tuple(scenario.revisions().values())))
    member = result.steps.get("replace_member", {})
    if member:
        table.add_row(
            "member replaced under load: failed requests", f"{member['failed']} of {member['requests']}"
        )
    planes = result.steps.get("planes", {})
    if planes:
        accepted = int(planes["etcd_write_accepted"]) + int(planes["nats_connect_accepted"])
        table.add_row("clients without credentials accepted (etcd, NATS)", f"{accepted} of 2")
    healthy = etcd_members_healthy_published(config)
    if healthy:
        table.add_row(
            "etcd members healthy, as the collector read them (operator identity): fewest / most",
            f"{min(healthy):g} / {max(healthy):g} over {len(healthy)} rounds",
        )
    if result.reaction_s is not None:
        table.add_row("scale-out reaction (load step -> UpdateService)", f"{result.reaction_s:.0f} s")
    table.add_row("load: completions / errors", f"{result.load_completed} / {result.load_errors}")
    table.add_row(
        "Dynamo task starts (processes started by the local ECS)", str(scenario.stack.runner.started_count)
    )
    table.add_row("final desired counts", str(scenario.desired()))
    table.add_row("wall time (main part)", f"{elapsed:.1f} s")
    console.print(table)


def etcd_members_healthy_published(config: Any) -> list[float]:
    """Every EtcdMembersHealthy value the collector published (moto's CloudWatch), oldest first."""
    answer = aws.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "healthy",
                "MetricStat": metric_stat(
                    config.signals.namespace,
                    config.deployment,
                    SERVICE_INFRA,
                    ETCD_MEMBERS_HEALTHY,
                    1,
                    "Minimum",
                ),
            }
        ],
        StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        ScanBy="TimestampAscending",
    )
    return [float(v) for r in answer["MetricDataResults"] for v in r["Values"]]


def interrupt_between_steps(stack: LocalStack) -> None:
    """Ctrl-C stops the demo even inside a library that swallows KeyboardInterrupt: the flag
    is checked again at every tick."""

    def on_sigint(signum: int, frame: Any) -> None:
        stack.stop_requested = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument(
        "--chart", type=Path, default=Path("demo-timeline.png"), help="where to write the PNG"
    )
    parser.add_argument(
        "--skip-single-task",
        action="store_true",
        help="leave out the single-task part (InfraMembers 1: the infra task replaced, with and "
        "without the operator) and the side-by-side table",
    )
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    iam_check.install()  # every handler's AWS calls are checked against its role, as in the tests
    logger.setLevel("WARNING")  # the demo narrates; the operator's JSON logs only on warnings
    started = time.perf_counter()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="dynamo-ecs-demo-") as workdir,
            LocalStack.start(Path(workdir)) as stack,
        ):
            tier = stack.tier.tier
            console.print(
                f"[bold]local stack[/]: moto {stack.world.ecs.meta.endpoint_url}; template.yaml's default "
                f"layout: three etcd + NATS members ({', '.join(tier.member_names)}), each from its own task "
                "definition, etcd with mutual TLS and auth, NATS with TLS and passwords; each member's name "
                "is a fixed 127.x address here (Cloud Map's stand-in), every moto 10.x address is 127.x"
            )
            deployed = stack.deployed
            console.print(
                f"[bold]stack[/] {deployed.name!r} created on moto's CloudFormation from template.yaml: "
                f"{len(deployed.physical)} resources; made through the APIs instead: the capacity "
                "provider and the scaling alarms (moto's CloudFormation has no model for them), the plane "
                "credentials (by the credential maker's own code, into moto's Secrets Manager), the GPU "
                "services (by the bootstrap function, as the custom resource does)"
            )
            interrupt_between_steps(stack)
            scenario = Scenario(stack, narrate=console.print)
            result = scenario.run_main()
            summary(console, scenario, result, time.perf_counter() - started)
            chart = write_chart(result, args.chart, stack.config.frontend.targets.ttft_ms or 0.0)
        console.print(f"timeline chart: {chart}")
        if not args.skip_single_task:
            single = single_task_part(console)
            side_by_side(console, single, result)
        console.print(f"all local processes stopped; wall time {time.perf_counter() - started:.1f} s")
    except KeyboardInterrupt:
        console.print("interrupted: every local process stopped")
        return 130
    return report_iam(console)


def single_task_part(console: Console) -> DemoResult:
    """Steps 8 and 9 on a second local stack with InfraMembers 1."""
    console.print(
        "[bold]single-task part[/]: a second stack with [bold]InfraMembers 1[/], the development layout: "
        "one Fargate task runs etcd and NATS, [bold]unauthenticated and in clear text[/] (its address "
        "changes with every task, so no certificate made at deploy time can name it: "
        "docs/security-planes.md). It is the layout whose replaced task the operator repairs by "
        "re-resolving its IP into the GPU task definitions"
    )
    with (
        tempfile.TemporaryDirectory(prefix="dynamo-ecs-demo-single-") as workdir,
        LocalStack.start(Path(workdir), {"InfraMembers": "1"}) as stack,
    ):
        interrupt_between_steps(stack)
        return Scenario(stack, narrate=console.print).run_single_task()


def side_by_side(console: Console, single: DemoResult, main: DemoResult) -> None:
    outage = single.steps.get("replace_infra", {}).get("outage_s")
    held = single.steps.get("replace_infra_without_operator", {})
    member = main.steps.get("replace_member", {})
    table = Table(title="an infra loss, side by side")
    table.add_column("layout")
    table.add_column("failed requests / outage", justify="right")
    table.add_column("GPU tasks started again", justify="right")
    table.add_row(
        "one task, replaced (operator on)",
        "no completion for " + ("ever" if outage is None else f"{outage:.1f} s"),
        "all",
    )
    if held:
        without = held["without_operator_outage_s"]
        table.add_row(
            f"one task, replaced (operator held back {held['bound_s']:.0f} s)",
            "no completion for the whole bound" if without is None else f"no completion for {without:.1f} s",
            f"{held['tasks_started']} (on the old address)",
        )
    if member:
        table.add_row(
            "three members, one lost (planes on)",
            f"{member['failed']} of {member['requests']} failed",
            str(member["gpu_tasks_started"]),
        )
    console.print(table)


def report_iam(console: Console) -> int:
    """1 when a handler called AWS outside its role (AWS would have refused what moto did)."""
    violations = sorted({str(v) for v in iam_check.take_violations()})
    if not violations:
        console.print("IAM: every AWS call of every handler was within its role in template.yaml")
        return 0
    console.print("[bold red]IAM: calls AWS would refuse[/]: " + "; ".join(violations))
    return 1


if __name__ == "__main__":
    sys.exit(main())
