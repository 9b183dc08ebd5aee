"""``dynamo-ecs replay``: replay a load trace through our policy and the baselines.

The options are declared with click in ``dynamo_ecs_cli/main.py`` like every other
``dynamo-ecs`` command; this module runs them (`run`).

Examples::

    dynamo-ecs replay                                # built-in bursty trace
    dynamo-ecs replay --trace diurnal --seed 3
    dynamo-ecs replay --trace week.csv --set frontend.targets.ttft_ms=400
    dynamo-ecs replay --trace requests.csv.gz --at-trace-lengths --scale-to 0.8
    dynamo-ecs replay --model model_load_s=420 --set scaling.metric_period_s=10
    dynamo-ecs replay --export-command --start 2026-11-20T00:00:00Z --end 2026-11-27T00:00:00Z

The config is the stack's (``DYNAMO_ECS_*`` variables, `dynamo_ecs.config.load_config`);
each ``--set key.path=value`` overrides one field as its variable would, validated the same way.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dynamo_ecs.config import ENV_PREFIX, DeploymentConfig, format_validation_error, load_config
from dynamo_ecs.errors import ConfigError
from dynamo_ecs_cli.profile import ProfileError, load_profile, model_knobs
from dynamo_ecs_cli.replay.catalog import POLICIES
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.report import print_table, results_table, write_chart
from dynamo_ecs_cli.replay.simulate import SlaTargets, replay_all
from dynamo_ecs_cli.replay.traces import (
    TraceError,
    at_trace_lengths,
    export_command,
    resolve_trace,
    scale_to_capacity,
)

DEFAULT_OUT = Path("out/replay")
_KEY_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")


class UsageError(ValueError):
    """Bad input on the command line: printed, nothing runs."""


def _pairs(items: Sequence[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _KEY_PATH.match(key.strip()):
            raise UsageError(f"{option} {item!r}: expected key.path=value (e.g. frontend.max=6)")
        pairs.append((key.strip(), value.strip()))
    return pairs


def config_with_overrides(
    overrides: Sequence[str], environ: Mapping[str, str] | None = None
) -> DeploymentConfig:
    """The stack's config from ``DYNAMO_ECS_*``, each ``key.path=value`` set as its variable."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k.startswith(ENV_PREFIX)}
    for key, value in _pairs(overrides, "--set"):
        env[ENV_PREFIX + "__".join(part.upper() for part in key.split("."))] = value
    try:
        return load_config(env)
    except ConfigError as exc:
        raise UsageError(f"{exc} (--set key.path=value sets the variable named)") from None


def model_params(overrides: Sequence[str], profile: Path | None = None) -> ModelParams:
    """The model's knobs: defaults, then the profile's (if any), then each ``--model`` override."""
    values: dict[str, Any] = {}
    if profile is not None:
        measured = load_profile(profile)
        defaults = ModelParams()
        values.update(model_knobs(measured, defaults.ttft_load_factor, defaults.itl_load_factor))
    values.update(dict(_pairs(overrides, "--model")))
    try:
        return ModelParams.model_validate(values)
    except ValidationError as exc:
        raise UsageError(f"--model: {format_validation_error(exc, None)}") from None


def export_window(start: str | None, end: str | None, now: datetime | None = None) -> tuple[str, str]:
    """The export's start and end, ISO 8601 UTC; the default is the last 7 days."""

    def parse(text: str, option: str) -> datetime:
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{option} {text!r}: not ISO 8601 (e.g. 2026-11-20T00:00:00Z)") from None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)

    last = parse(end, "--end") if end else (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    first = parse(start, "--start") if start else last - timedelta(days=7)
    if first >= last:
        raise UsageError("--start must be before --end")
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return first.astimezone(UTC).strftime(iso), last.astimezone(UTC).strftime(iso)


@dataclass(frozen=True)
class ReplayOptions:
    """The options of ``dynamo-ecs replay`` (main.py declares them for click)."""

    trace: str = "bursty"
    seed: int = 1
    hours: float | None = None
    scale_to: float | None = None
    at_trace_lengths: bool = False
    overrides: tuple[str, ...] = ()
    knobs: tuple[str, ...] = ()
    profile: Path | None = None
    policies: str | None = None
    out: Path = DEFAULT_OUT
    no_chart: bool = False
    export_command: bool = False
    start: str | None = None
    end: str | None = None


def run(options: ReplayOptions) -> int:
    config = config_with_overrides(options.overrides)
    if options.export_command:
        start, end = export_window(options.start, options.end)
        print(export_command(config, start, end) + " > trace.json")
        return 0
    params = model_params(options.knobs, options.profile)
    chosen = options.policies if options.policies is not None else ",".join(POLICIES)
    policies = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = [name for name in policies if name not in POLICIES]
    if unknown or not policies:
        raise UsageError(
            f"--policies: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(POLICIES)}"
        )
    if options.hours is not None and options.hours <= 0:
        raise UsageError("--hours must be > 0")
    trace = resolve_trace(options.trace, options.seed, options.hours)
    if options.at_trace_lengths:
        params = at_trace_lengths(params, trace)
    if options.scale_to is not None:
        trace = scale_to_capacity(trace, params, config, options.scale_to)
    sla = SlaTargets.from_config(config)
    results = replay_all(trace, config, params, policies, sla)

    text = print_table(results_table(trace, results))
    options.out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", trace.name)
    (options.out / f"{stem}.txt").write_text(text, encoding="utf-8")
    summary = {
        "trace": trace.name,
        "hours": trace.duration_s / 3600,
        "sla": {"ttft_p90_ms": sla.ttft_p90_ms, "itl_p90_ms": sla.itl_p90_ms},
        "model": params.model_dump(),
        "scaling": config.scaling.model_dump(),
        "results": [r.summary() for r in results],
    }
    (options.out / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not options.no_chart:
        chart = write_chart(options.out / f"{stem}.png", trace, results, sla, params)
        print(f"chart: {chart}")
    return 0


def run_safely(options: ReplayOptions) -> int:
    """`run`, with bad input printed on stderr and exit code 2 (nothing runs)."""
    try:
        return run(options)
    except (UsageError, TraceError, ProfileError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``dynamo-ecs replay ARGS``: the click command of main.py, its exit code returned."""
    import click

    from dynamo_ecs_cli.main import cli

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(["replay", *args], prog_name="dynamo-ecs", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return int(result or 0)
