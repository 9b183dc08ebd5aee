"""The ``dynamo-ecs`` command group: one subcommand per operator task.

Exit codes (the same for every subcommand, docs/cli.md):

- 0: done, every check passed;
- 1: a check failed, or the deployment has an open diagnosis;
- 2: usage error (a bad option or value); nothing was changed;
- 3: AWS could not answer (no credentials, no such stack, access denied).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from dynamo_ecs_cli import __version__, decision_log
from dynamo_ecs_cli.replay import cli as replay_cli

PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dynamo-ecs")
def cli() -> None:
    """Operate a dynamo-ecs-operator deployment: preflight, status, decisions, replay, redeploy."""


@cli.command(context_settings=PASS_THROUGH, add_help_option=False)
@click.pass_context
def replay(ctx: click.Context) -> None:
    """Replay a load trace through the scaling policy and its baselines (--help for options)."""
    ctx.exit(replay_cli.main(list(ctx.args)))


@cli.command(context_settings=PASS_THROUGH, add_help_option=False)
@click.pass_context
def decisions(ctx: click.Context) -> None:
    """A deployment's decision log from the state table, newest first (--help for options)."""
    ctx.exit(decision_log.main(list(ctx.args)))


def main(argv: Sequence[str] | None = None) -> None:
    """The console script ``dynamo-ecs``."""
    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="dynamo-ecs")
