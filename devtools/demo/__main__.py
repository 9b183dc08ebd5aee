"""`make demo`: run the six steps with a live narration, a summary table and a PNG timeline,
then a member of the three-member etcd + NATS tier lost under load (``--skip-tier``: not).

Usage: ``python -m devtools.demo [--chart PATH]``. Every process it starts (moto server,
etcd, nats-server, the Dynamo frontends and workers) is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from devtools.demo.chart import write_chart
from devtools.demo.scenario import DemoResult, Scenario
from devtools.demo.stack import LocalStack
from devtools.demo.tier import member_loss_demo
from devtools.iam_check import enforce as iam_check
from dynamo_ecs.observability import logger
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
    steps = result.steps
    outage = steps.get("replace_infra", {}).get("outage_s")
    table.add_row(
        "outage, infra replaced, with the operator", "never" if outage is None else f"{outage:.1f} s"
    )
    held = steps.get("replace_infra_without_operator", {})
    if held:
        table.add_row(
            f"outage without the operator (bound {held['bound_s']:.0f} s)",
            "never"
            if held["without_operator_outage_s"] is None
            else f"{held['without_operator_outage_s']:.1f} s",
        )
    if result.reaction_s is not None:
        table.add_row("scale-out reaction (load step -> UpdateService)", f"{result.reaction_s:.0f} s")
    table.add_row("load: completions / errors", f"{result.load_completed} / {result.load_errors}")
    table.add_row(
        "Dynamo task starts (processes started by the local ECS)", str(scenario.stack.runner.started_count)
    )
    table.add_row("final desired counts", str(scenario.desired()))
    table.add_row("wall time", f"{elapsed:.1f} s")
    console.print(table)


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
        "--skip-tier", action="store_true", help="leave out the three-member tier's member loss at the end"
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
            infra = stack.deployment.infra
            console.print(
                f"[bold]local stack[/]: moto {stack.world.ecs.meta.endpoint_url}; the infra task's etcd "
                f"{infra.etcd_url} and nats-server {infra.nats_url} run from its task definition; every "
                "moto 10.x address is 127.x here, where the task's real processes listen"
            )
            deployed = stack.deployed
            console.print(
                f"[bold]stack[/] {deployed.name!r} created on moto's CloudFormation from template.yaml: "
                f"{len(deployed.physical)} resources; made through the APIs instead: the capacity "
                "provider and the scaling alarms (moto's CloudFormation has no model for them), the GPU "
                "services (by the bootstrap function, as the custom resource does)"
            )
            interrupt_between_steps(stack)
            scenario = Scenario(stack, narrate=console.print)
            result = scenario.run_all()
            summary(console, scenario, result, time.perf_counter() - started)
            chart = write_chart(result, args.chart, stack.config.frontend.targets.ttft_ms or 0.0)
        console.print(f"timeline chart: {chart}")
        if not args.skip_tier:
            with tempfile.TemporaryDirectory(prefix="dynamo-ecs-demo-tier-") as workdir:
                tier = member_loss_demo(Path(workdir), console.print)
            outage = result.steps.get("replace_infra", {}).get("outage_s")
            table = Table(title="an infra loss, side by side")
            table.add_column("layout")
            table.add_column("failed requests / outage", justify="right")
            table.add_column("GPU tasks started again", justify="right")
            table.add_row(
                "one task, replaced (operator on)",
                "no completion for " + ("ever" if outage is None else f"{outage:.1f} s"),
                "all",
            )
            table.add_row(
                "three members, one lost",
                f"{tier.loss.failed} of {tier.loss.requests} failed",
                str(tier.loss.gpu_tasks_started),
            )
            console.print(table)
        console.print("all local processes stopped")
    except KeyboardInterrupt:
        console.print("interrupted: every local process stopped")
        return 130
    return report_iam(console)


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
