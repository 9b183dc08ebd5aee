"""The ``dynamo-ecs`` command group: one subcommand per operator task.

Exit codes (the same for every subcommand, docs/cli.md):

- 0: done, every check passed (warnings allowed), nothing open;
- 1: a check failed, the deployment has an open diagnosis, or the redeploy was refused;
- 2: usage error (a bad option or value); nothing was read or changed;
- 3: AWS could not answer (no credentials or region, no such stack, access denied).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dynamo_ecs_cli import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from dynamo_ecs_cli.stack import Aws

# Each subcommand imports what it needs when it runs (boto3, pydantic, rich, matplotlib), so
# `dynamo-ecs --help` and a usage error answer at once.

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AWS = 0, 1, 2, 3
MARKS = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[red]fail[/]"}


def aws_options[F: Callable[..., Any]](command: F) -> F:
    """--stack, --region, --profile, --json: taken as the AWS CLI and sam take them."""
    options = [
        click.option(
            "--stack",
            "stack_name",
            envvar="DYNAMO_ECS_STACK",
            default="dynamo",
            show_default=True,
            help="CloudFormation stack name (env DYNAMO_ECS_STACK)",
        ),
        click.option(
            "--region", envvar="AWS_REGION", help="AWS region (default: the profile's or AWS_REGION)"
        ),
        click.option("--profile", envvar="AWS_PROFILE", help="named profile of ~/.aws/config"),
        click.option("--json", "as_json", is_flag=True, help="print JSON for scripts instead of tables"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def fail_on_aws(run: Callable[[], int]) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from dynamo_ecs_cli.stack import AwsUnavailableError, aws_error_text

    try:
        return run()
    except AwsUnavailableError as exc:
        click.echo(f"dynamo-ecs: {exc}", err=True)
        return EXIT_AWS
    except (ClientError, BotoCoreError) as exc:
        click.echo(f"dynamo-ecs: AWS: {aws_error_text(exc)}", err=True)
        return EXIT_AWS


def _declined(yes: bool, question: str, not_done: str, verb: str) -> int | None:
    """None when a mutating command may go on (``--yes``, or a yes at the terminal); else its
    exit code: usage without a terminal to ask at, ok when the answer is no."""
    if yes:
        return None
    if not sys.stdin.isatty():
        click.echo(f"dynamo-ecs: {not_done}: pass --yes to {verb} without a terminal", err=True)
        return EXIT_USAGE
    return None if click.confirm(question, default=False) else EXIT_OK


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dynamo-ecs")
def cli() -> None:
    """Operate a dynamo-ecs-operator deployment: preflight, status, decisions, replay, redeploy, roll-infra,
    etcd-maintenance.

    Exit codes: 0 ok, 1 a check failed or a diagnosis is open, 2 usage error, 3 AWS could not answer.
    """


# --- doctor -----------------------------------------------------------------------------------


def _parameter_pairs(values: Sequence[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        for item in value.split():
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r}: expected Key=Value (e.g. GpuBudget=4)")
            pairs[key] = text
    return pairs


@cli.command("doctor")
@aws_options
@click.option(
    "--parameter-overrides",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE ...",
    help="stack parameters to check with, as sam deploy takes them (repeatable)",
)
def doctor_command(
    stack_name: str, region: str | None, profile: str | None, as_json: bool, overrides: tuple[str, ...]
) -> None:
    """Check GPU quota, zones, routes, the NGC secret, the AMI and the build tools, before or after a deploy.

    With a deployed stack its parameters are checked; before the first deploy, template.yaml's
    defaults and --parameter-overrides (TaskSubnetIds and NgcSecretArn at least).
    """
    given = _parameter_pairs(overrides)

    def run() -> int:
        from dynamo_ecs_cli import doctor
        from dynamo_ecs_cli.stack import Aws, find_stack

        aws = Aws(profile, region)
        stack = find_stack(aws, stack_name)
        inputs = doctor.Inputs({**(stack.parameters if stack else {}), **given})
        checks = doctor.run_checks(aws, inputs, deployed=stack is not None)
        failed = any(c.status == "fail" for c in checks)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "stack": stack_name,
                        "deployed": stack is not None,
                        "checks": [c.as_dict() for c in checks],
                    },
                    indent=2,
                )
            )
        else:
            out = console()
            where = f"stack {stack_name!r}" if stack else f"before deploy (no stack {stack_name!r} yet)"
            out.print(f"dynamo-ecs doctor: {where}, region {aws.region_name}")
            for check in checks:
                out.print(f"{MARKS[check.status]}  {check.name:22} {check.detail}", soft_wrap=True)
                if check.fix and check.status != "pass":
                    out.print(f"      {'':22} fix: {check.fix}", soft_wrap=True)
            counts = {s: sum(1 for c in checks if c.status == s) for s in ("pass", "warn", "fail")}
            out.print(f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed")
        return EXIT_FAILED if failed else EXIT_OK

    sys.exit(fail_on_aws(run))


# --- status -----------------------------------------------------------------------------------


def _print_status(report: dict[str, Any]) -> None:
    from rich.table import Table

    from dynamo_ecs_cli import decision_log

    out = console()
    out.print(f"stack {report['stack']!r} ({report['stack_status']}), deployment {report['deployment']!r}")
    tasks = report["infra"]["tasks"]
    if tasks:
        for task in tasks:
            out.print(f"infra {task['service']}: task {task['task']} {task['status']} at {task['address']}")
    else:
        out.print(
            f"infra {report['infra']['service']}: [red]no running task[/] "
            "(the GPU services have no etcd/NATS)"
        )
    table = Table(title="GPU services")
    for column in ("service", "revision", "desired", "running", "pending", "rollout", "ready"):
        table.add_column(column)
    for service in report["services"]:
        if service.get("missing"):
            table.add_row(service["service"], "[red]missing[/]", "", "", "", "", "")
            continue
        table.add_row(
            service["service"],
            service["revision"],
            str(service["desired"]),
            str(service["running"]),
            str(service["pending"]),
            service["rollout"],
            service["ready"],
        )
    out.print(table)
    if report["open_diagnoses"]:
        diagnoses = Table(title="open diagnoses")
        for column in ("kind", "service", "what", "seen", "fix"):
            diagnoses.add_column(column, overflow="fold")
        for d in report["open_diagnoses"]:
            what = f"{d['summary']}\n{d['evidence']}"
            if d.get("log_lines"):
                what += "\nlast log lines:\n" + "\n".join(d["log_lines"][-5:])
            seen = f"{d['count']}x, {d['first_seen']} .. {d['last_seen']}"
            diagnoses.add_row(d["kind"], d["service"], what, seen, d["fix"])
        out.print(diagnoses)
    else:
        out.print(f"no open diagnosis ({report['resolved_diagnoses']} resolved)")
    out.print("last decisions:")
    for entry in report["decisions"]:
        what, _ = decision_log.describe(entry)
        out.print(f"  {entry['at']}  {entry['kind']:10} {what}", soft_wrap=True)


@cli.command("status")
@aws_options
@click.option(
    "--decisions",
    "decision_count",
    default=5,
    show_default=True,
    type=click.IntRange(0, 100),
    help="last N decision-log entries",
)
def status_command(
    stack_name: str, region: str | None, profile: str | None, as_json: bool, decision_count: int
) -> None:
    """The infra task and its address, each GPU service's revision and counts, open diagnoses, last decisions.

    Exits 1 while a diagnosis is open, the infra task has no address or a service is short of its count.
    """

    def run() -> int:
        from dynamo_ecs_cli import status
        from dynamo_ecs_cli.stack import Aws, require_stack

        aws = Aws(profile, region)
        report = status.gather(aws, require_stack(aws, stack_name), decision_count)
        ok = status.healthy(report)
        if as_json:
            click.echo(json.dumps({**report, "healthy": ok}, indent=2, default=str))
        else:
            _print_status(report)
        return EXIT_OK if ok else EXIT_FAILED

    sys.exit(fail_on_aws(run))


# --- decisions --------------------------------------------------------------------------------


@cli.command("decisions")
@aws_options
@click.option("--table", help="the state table (default: the stack's StateTableName output)")
@click.option("--deployment", help="the DeploymentName (default: the stack's)")
@click.option(
    "--kind",
    type=click.Choice(["scaling", "endpoints", "redeploy", "diagnosis", "signals"]),
    help="only this kind",
)
@click.option("--limit", default=30, show_default=True, type=click.IntRange(min=1), help="newest N entries")
@click.option("--changes-only", is_flag=True, help="skip scaling entries that changed nothing")
@click.option("--width", type=click.IntRange(min=40), help="table width in columns (default: the terminal's)")
def decisions_command(
    stack_name: str,
    region: str | None,
    profile: str | None,
    as_json: bool,
    table: str | None,
    deployment: str | None,
    kind: str | None,
    limit: int,
    changes_only: bool,
    width: int | None,
) -> None:
    """The decision log, newest first: scale decisions, rollouts, redeploys and diagnoses, each with why."""

    def run() -> int:
        from dynamo_ecs.state import StateStore
        from dynamo_ecs_cli import decision_log
        from dynamo_ecs_cli.stack import Aws, require_stack

        aws = Aws(profile, region)
        if table:
            name, owner = table, deployment or "dynamo"
        else:
            stack = require_stack(aws, stack_name)
            name, owner = stack.output("StateTableName"), deployment or stack.deployment
        store = StateStore(name, owner, client=aws.client("dynamodb"))
        entries = decision_log.entries_to_show(store, kind, limit, changes_only)
        decision_log.print_entries(entries, owner, width, as_json)
        return EXIT_OK

    sys.exit(fail_on_aws(run))


# --- replay -----------------------------------------------------------------------------------


@cli.command("replay")
@click.option(
    "--trace",
    default="bursty",
    show_default=True,
    help="a built-in trace (diurnal, bursty, step, ramp, onoff, flash) or a file: a rate CSV, a "
    "CloudWatch export (.json), a per-request CSV (arrival_s,input_tokens,output_tokens) or "
    "Mooncake JSON lines (.jsonl), optionally .gz",
)
@click.option("--seed", type=int, default=1, show_default=True, help="seed of a built-in trace")
@click.option("--hours", type=float, help="length of a built-in trace, or cut a file's trace to it")
@click.option(
    "--scale-to",
    type=float,
    metavar="FRACTION",
    help="scale the trace's rate so its busiest 5 minutes ask this fraction of what the services' "
    "maxima serve within the SLA (e.g. 0.8)",
)
@click.option(
    "--at-trace-lengths",
    is_flag=True,
    help="profile the model at the trace's mean token lengths (per-request traces)",
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="config override, repeatable"
)
@click.option("--model", "knobs", multiple=True, metavar="KNOB=VALUE", help="model knob, repeatable")
@click.option(
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="a profile file (dynamo-ecs profile): per-replica throughput and latency from a measurement",
)
@click.option("--policies", help="comma-separated subset of the policies (default: all; docs/replay.md)")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/replay"), show_default=True
)
@click.option("--no-chart", is_flag=True, help="skip the PNG")
@click.option(
    "--export-command", is_flag=True, help="print the aws CLI command that exports RequestRate, then exit"
)
@click.option("--start", help="export start, ISO 8601 (default: 7 days before --end)")
@click.option("--end", help="export end, ISO 8601 (default: now, to the minute)")
@click.pass_context
def replay_command(ctx: click.Context, /, **options: Any) -> None:
    """Replay a load trace through the scaling policy and its peers, offline (docs/replay.md)."""
    from dynamo_ecs_cli.replay import cli as replay_cli

    ctx.exit(replay_cli.run_safely(replay_cli.ReplayOptions(**options)))


# --- profile ----------------------------------------------------------------------------------


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: comma-separated numbers, e.g. 1,2,4,8") from None
    if not rates or any(r <= 0 for r in rates) or rates != sorted(set(rates)):
        raise click.BadParameter(f"{text!r}: increasing rates above 0, e.g. 1,2,4,8")
    return rates


@cli.command("profile")
@click.option(
    "--url", required=True, help="a Dynamo frontend with one frontend and one prefill task behind it"
)
@click.option("--model", required=True, help="the served model name")
@click.option("--rates", default="1,2,4,8,12,16", show_default=True, help="request rates to try, requests/s")
@click.option(
    "--step",
    "step_s",
    type=click.FloatRange(5, 120),
    default=20.0,
    show_default=True,
    help="seconds per rate",
)
@click.option("--input-tokens", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--output-tokens", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.option(
    "--ttft-ms", type=click.FloatRange(min=1), default=500.0, show_default=True, help="TTFT target (mean)"
)
@click.option(
    "--itl-ms", type=click.FloatRange(min=0.1), default=50.0, show_default=True, help="ITL target (mean)"
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("profile.json"), show_default=True
)
def profile_command(
    url: str,
    model: str,
    rates: str,
    step_s: float,
    input_tokens: int,
    output_tokens: int,
    ttft_ms: float,
    itl_ms: float,
    out: Path,
) -> None:
    """Measure requests/s per replica at the latency targets; write a profile file (docs/replay.md)."""
    from datetime import UTC, datetime

    from dynamo_ecs_cli import profile as profiling

    chosen = _rates(rates)
    source = f"dynamo-ecs profile of {url} ({model}), {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    try:
        result = profiling.run_profile(
            url.rstrip("/"),
            model,
            chosen,
            step_s,
            input_tokens,
            output_tokens,
            ttft_ms,
            itl_ms,
            source,
            on_point=lambda p: click.echo(
                f"{p.rate_rps:g}/s: {p.completed_rps:g}/s done, {p.errors} errors, "
                f"TTFT {p.ttft_mean_ms:.0f} ms, ITL {p.itl_mean_ms:.1f} ms"
            ),
        )
    except profiling.ProfileError as exc:
        click.echo(f"dynamo-ecs profile: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    profiling.write_profile(result, out)
    bound = " (at least: no rate reached the ITL target)" if result.frontend_is_lower_bound else ""
    click.echo(
        f"prefill: {result.prefill_capacity_rps:g} requests/s per replica at TTFT {ttft_ms:g} ms "
        f"({result.prefill_capacity_tokens_per_s:g} input tokens/s at {result.input_tokens:g} per prompt)"
    )
    click.echo(
        f"frontend: {result.frontend_capacity_rps:g} requests/s per replica at ITL {itl_ms:g} ms{bound} "
        f"({result.frontend_capacity_tokens_per_s:g} output tokens/s at {result.output_tokens:g} per request)"
    )
    click.echo(
        f"wrote {out}; deploy with FrontendCapacityRps={result.frontend_capacity_rps:g} "
        f"PrefillCapacityRps={result.prefill_capacity_rps:g} (or, in tokens, "
        f"FrontendCapacityTokensPerS={result.frontend_capacity_tokens_per_s:g} "
        f"PrefillCapacityTokensPerS={result.prefill_capacity_tokens_per_s:g}), replay with --profile {out}"
    )
    sys.exit(EXIT_OK)


# --- roll-infra -------------------------------------------------------------------------------


@cli.command("roll-infra")
@aws_options
@click.option(
    "--dry-run", is_flag=True, help="check that every member is steady and show the order, change nothing"
)
@click.option("--yes", "-y", is_flag=True, help="roll without asking")
@click.option(
    "--timeout",
    "timeout_s",
    default=900.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="seconds a member may take to be steady again",
)
@click.option(
    "--skip-etcd-health",
    is_flag=True,
    help="rely on ECS alone: do not wait for the collector's EtcdMembersHealthy between members",
)
@click.option(
    "--poll",
    "poll_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds between checks",
)
def roll_infra_command(
    stack_name: str,
    region: str | None,
    profile: str | None,
    as_json: bool,
    dry_run: bool,
    yes: bool,
    timeout_s: float,
    skip_etcd_health: bool,
    poll_s: float,
) -> None:
    """Start each etcd + NATS member's task again, one at a time, each once all are steady.

    Run after each step of the planes' rotation (PlaneRotationStep), then `redeploy --force`.
    """

    def run() -> int:
        from dynamo_ecs.config import SignalsConfig
        from dynamo_ecs_cli.roll_infra import etcd_members_healthy, roll_members
        from dynamo_ecs_cli.stack import Aws, require_stack

        aws = Aws(profile, region)
        stack = require_stack(aws, stack_name)
        cluster = stack.output("InfraClusterName")
        services = [s for s in stack.output("InfraServiceName").split(",") if s]
        ecs = aws.client("ecs")
        say = (lambda _: None) if as_json else console().print
        healthy = None
        if len(services) > 1 and not skip_etcd_health:  # the three-member tier: the collector reads etcd
            healthy = etcd_members_healthy(
                aws.client("cloudwatch"), SignalsConfig().namespace, stack.deployment
            )
        plan = roll_members(ecs, cluster, services, dry_run=True, say=say, healthy=healthy)
        if dry_run or not plan.ok:
            return _finish_roll(plan, as_json)
        declined = _declined(yes, "roll?", "not rolled", "roll")
        if declined is not None:
            return declined
        done = roll_members(
            ecs, cluster, services, timeout_s=timeout_s, poll_s=poll_s, say=say, healthy=healthy
        )
        return _finish_roll(done, as_json)

    sys.exit(fail_on_aws(run))


def _finish_roll(report: Any, as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        what = "every member is steady" if report.dry_run else f"rolled {', '.join(report.rolled)}"
        console().print(f"{what} ({report.cluster})")
    else:
        console().print(f"[red]stopped at {report.stopped_at}[/]: {report.reason}", soft_wrap=True)
    return EXIT_OK if report.ok else EXIT_FAILED


# --- etcd-maintenance -------------------------------------------------------------------------


@cli.command("etcd-maintenance")
@aws_options
@click.argument("action", type=click.Choice(["status", "recover"]), default="status")
@click.option("--dry-run", is_flag=True, help="show the RunTask request it would send, start nothing")
@click.option("--yes", "-y", is_flag=True, help="recover without asking")
@click.option(
    "--timeout",
    "timeout_s",
    default=2400.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="seconds to wait for the task to stop (recover: three defragmentations, up to 600 s each)",
)
@click.option(
    "--poll",
    "poll_s",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds between checks",
)
def etcd_maintenance_command(
    stack_name: str,
    region: str | None,
    profile: str | None,
    as_json: bool,
    action: str,
    dry_run: bool,
    yes: bool,
    timeout_s: float,
    poll_s: float,
) -> None:
    """Run etcd's maintenance as root in the stack's one-off task (three-member tier).

    status: each member's file size, leader and revision, the alarms, authentication, users and
    roles compared with the planes'. recover: compact, defragment the followers then the leader,
    disarm the alarms, put back users and roles that differ, then the same checks.
    """

    def run() -> int:
        from dynamo_ecs_cli import etcd_maintenance as maintenance
        from dynamo_ecs_cli.stack import Aws, require_stack

        aws = Aws(profile, region)
        stack = require_stack(aws, stack_name)
        refusal = maintenance.single_task_refusal(stack.parameters, stack.outputs, stack.name)
        if refusal:
            click.echo(f"dynamo-ecs: not started: {refusal}", err=True)
            return EXIT_FAILED
        cluster = stack.output("InfraClusterName")
        family = stack.output(maintenance.FAMILY_OUTPUT)
        services = [s for s in stack.output("InfraServiceName").split(",") if s]
        ecs = aws.client("ecs")
        try:
            network = maintenance.member_network(ecs, cluster, services)
        except maintenance.MaintenanceRefusedError as exc:
            click.echo(f"dynamo-ecs: not started: {exc}", err=True)
            return EXIT_FAILED
        request = maintenance.run_task_request(cluster, family, action, network)
        busy = maintenance.running_tasks(ecs, cluster, family)
        if busy:
            arns = ", ".join(str(t.get("taskArn")) for t in busy)
            click.echo(
                f"dynamo-ecs: not started: a maintenance task of {family} still runs ({arns}): two must "
                "never defragment at once; wait until it stops (`aws ecs describe-tasks --cluster "
                f"{cluster} --tasks ...`) and run this again",
                err=True,
            )
            return EXIT_FAILED
        if dry_run:
            click.echo(json.dumps({"dry_run": True, "run_task": request}, indent=2))
            return EXIT_OK
        if action == "recover":
            question = "recover: compact, defragment every member (each serves nothing meanwhile), disarm? "
            declined = _declined(yes, question, "not started", "recover")
            if declined is not None:
                return declined
        started = ecs.run_task(**request)
        failures = started.get("failures") or []
        if failures or not started.get("tasks"):
            click.echo(f"dynamo-ecs: RunTask started nothing: {json.dumps(failures, default=str)}", err=True)
            return EXIT_FAILED
        arn = str(started["tasks"][0]["taskArn"])
        first = maintenance.first_of(maintenance.running_tasks(ecs, cluster, family), arn)
        if first is not None:
            ecs.stop_task(
                cluster=cluster, task=arn, reason=f"another etcd-maintenance task started first: {first}"
            )
            click.echo(f"dynamo-ecs: stopped {arn}: {first} was started first and goes on alone", err=True)
            return EXIT_FAILED
        if not as_json:
            click.echo(f"started {arn} ({action}); waiting until it stops")
        task = maintenance.wait_stopped(ecs, cluster, arn, timeout_s, poll_s)
        result = maintenance.outcome(ecs, aws.client("logs"), cluster, arn, task)
        if as_json:
            click.echo(json.dumps({"dry_run": False, "run_task": request, **result.as_dict()}, indent=2))
        else:
            _print_maintenance(result, timeout_s, cluster)
        return EXIT_OK if result.ok else EXIT_FAILED

    sys.exit(fail_on_aws(run))


def _print_maintenance(result: Any, timeout_s: float, cluster: str) -> None:
    if not result.stopped:
        click.echo(
            f"{result.task_arn} still runs after {timeout_s:.0f} s (not stopped by this command: a "
            f"defragmentation may be under way); follow it with `aws ecs describe-tasks --cluster {cluster}`"
        )
        return
    click.echo(f"stopped: {result.stopped_reason}")
    for name, code in result.exit_codes.items():
        click.echo(f"  {name}: exit code {'none (never ran or still unknown)' if code is None else code}")
    click.echo(f"log ({result.log_where}):")
    for line in result.log:
        click.echo(f"  {line}")
    click.echo("ok: nothing left wrong" if result.ok else "FAILED: see the log above")


# --- redeploy ---------------------------------------------------------------------------------


def _print_redeploy(result: dict[str, Any], title: str) -> None:
    out = console()
    out.print(f"{title}: {result.get('status')}" + (f" ({result['reason']})" if result.get("reason") else ""))
    if result.get("error"):
        out.print(f"  {result['error']}", soft_wrap=True)
    for change in result.get("changes", []):
        out.print(
            f"  {change['service']}: {change['old_revision']} -> {change.get('new_revision') or '(new)'}"
        )
        for path, move in (change.get("diff") or {}).items():
            out.print(f"    {path}: {json.dumps(move, default=str)}", soft_wrap=True)
        for note in change.get("notes") or []:  # what the operator changes in the spec to register it
            out.print(f"    note: {note}", soft_wrap=True)


def _invoke(aws: Aws, function: str, payload: dict[str, Any]) -> dict[str, Any]:
    answer = aws.client("lambda").invoke(
        FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
    )
    body = answer["Payload"].read().decode() or "null"
    result = json.loads(body)
    if answer.get("FunctionError"):
        message = result.get("errorMessage", body) if isinstance(result, dict) else body
        return {"status": "error", "error": f"the Redeploy function failed: {message}"}
    return result if isinstance(result, dict) else {"status": "error", "error": f"unexpected answer: {body}"}


@cli.command("redeploy")
@aws_options
@click.option("--image", help="new Dynamo image, e.g. nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0")
@click.option("--model", help="new model id (--model of the workers), e.g. Qwen/Qwen3-8B")
@click.option(
    "--service",
    "services",
    multiple=True,
    type=click.Choice(["frontend", "prefill"]),
    help="only this service (repeatable; default both)",
)
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON file {"frontend": {task definition}, "prefill": {...}} (register-task-definition format)',
)
@click.option(
    "--force", is_flag=True, help="re-resolve the etcd/NATS address and roll even if nothing changed"
)
@click.option("--dry-run", is_flag=True, help="show what would change, change nothing")
@click.option("--yes", "-y", is_flag=True, help="apply without asking after the dry run")
def redeploy_command(
    stack_name: str,
    region: str | None,
    profile: str | None,
    as_json: bool,
    image: str | None,
    model: str | None,
    services: tuple[str, ...],
    spec_file: Path | None,
    force: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Roll a new image, model or spec through the stack's Redeploy function: dry run first, then for real."""
    payload: dict[str, Any] = {
        k: v
        for k, v in {
            "image": image,
            "model": model,
            "services": list(services) or None,
            "force": force or None,
        }.items()
        if v is not None
    }
    if spec_file is not None:
        try:
            payload["spec"] = json.loads(spec_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise click.BadParameter(f"{spec_file}: not JSON ({exc})", param_hint="--spec") from None

    def run() -> int:
        from dynamo_ecs_cli.stack import Aws, require_stack

        aws = Aws(profile, region)
        function = require_stack(aws, stack_name).output("RedeployFunctionName")
        preview = _invoke(aws, function, {**payload, "dry_run": True})
        results: dict[str, Any] = {"dry_run": preview}
        if preview.get("status") in ("refused", "error") or dry_run:
            return _finish(results, as_json)
        if not as_json:
            _print_redeploy(preview, "dry run")
        declined = _declined(yes, "apply?", "not applied", "apply")
        if declined is not None:
            return declined
        results["applied"] = _invoke(aws, function, payload)
        return _finish(results, as_json, printed_preview=True)

    sys.exit(fail_on_aws(run))


def _finish(results: dict[str, Any], as_json: bool, printed_preview: bool = False) -> int:
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
    else:
        if not printed_preview:
            _print_redeploy(results["dry_run"], "dry run")
        if "applied" in results:
            _print_redeploy(results["applied"], "applied")
    refused = any(r.get("status") in ("refused", "error") for r in results.values())
    return EXIT_FAILED if refused else EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    """The console script ``dynamo-ecs``."""
    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="dynamo-ecs")
