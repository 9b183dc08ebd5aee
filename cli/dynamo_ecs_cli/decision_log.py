"""Read a deployment's decision log from the state table: ``dynamo-ecs decisions``.

Every scale decision ("no change" included) and every endpoint rollout is an item in the
stack's state table (docs/scaling.md, "Reading the decision log"). This prints the newest
first as a table, with the AWS credentials and region of your shell:

    dynamo-ecs decisions --table <StateTableName output> [--deployment dynamo]
        [--kind scaling|endpoints|signals] [--limit 30] [--changes-only] [--json] [--width N]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from dynamo_ecs.state import StateStore


def describe(entry: dict[str, Any]) -> tuple[str, str]:
    """(what happened, why) for one entry, in a line each."""
    if entry["kind"] == "scaling":
        moves = []
        reasons = []
        for role, service in entry.get("services", {}).items():
            arrow = (
                f"{service['from']} -> {service['to']}" if service["action"] != "none" else f"{service['to']}"
            )
            moves.append(f"{role} {arrow}")
            reasons.append(f"{role}: {service['reason']}")
        return ", ".join(moves), " | ".join(reasons)
    if entry["kind"] == "endpoints":
        endpoint = entry.get("endpoint", {}).get("ip", "?")
        changes = ", ".join(c["service"] for c in entry.get("changes", []))
        return f"rolled {changes} onto {endpoint}", json.dumps(entry.get("trigger", {}), sort_keys=True)
    return entry["kind"], json.dumps(
        {k: v for k, v in entry.items() if k not in ("kind", "at")}, sort_keys=True
    )


def is_change(entry: dict[str, Any]) -> bool:
    if entry["kind"] != "scaling":
        return True
    return any(s["action"] != "none" for s in entry.get("services", {}).values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dynamo-ecs decisions", description=__doc__.split("\n")[0])
    parser.add_argument("--table", required=True, help="the stack's StateTableName output")
    parser.add_argument("--deployment", default="dynamo", help="the stack's DeploymentName (default dynamo)")
    parser.add_argument("--kind", choices=["scaling", "endpoints", "signals"], help="only this kind")
    parser.add_argument("--limit", type=int, default=30, help="newest N entries (default 30)")
    parser.add_argument(
        "--changes-only", action="store_true", help="skip scaling entries that changed nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the entries as JSON lines")
    parser.add_argument("--width", type=int, help="table width in columns (default: the terminal's)")
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error("--limit must be at least 1")

    entries = StateStore(args.table, args.deployment).decisions(kind=args.kind, limit=args.limit * 4)
    if args.changes_only:
        entries = [e for e in entries if is_change(e)]
    entries = entries[: args.limit]
    if args.json:
        for entry in entries:
            print(json.dumps(entry, sort_keys=True))
        return 0
    table = Table(title=f"decision log of {args.deployment!r}, newest first")
    for column in ("at", "kind", "trigger", "what", "why"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        trigger = entry.get("trigger", {})
        what, why = describe(entry)
        table.add_row(
            entry["at"], entry["kind"], str(trigger.get("kind") or trigger.get("event_id") or ""), what, why
        )
    Console(width=args.width).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
