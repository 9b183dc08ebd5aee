"""A deployment's decision log from the state table, as ``dynamo-ecs decisions`` prints it.

Every scale decision ("no change" included), every endpoint rollout, every redeploy and every
diagnosis is an item in the stack's state table (docs/scaling.md, "Reading the decision log");
this prints the newest first, as a table or as JSON lines.
"""

from __future__ import annotations

import json
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
    if entry["kind"] == "diagnosis":
        if entry.get("status") == "resolved":
            return f"resolved {entry['signature']}", entry.get("summary", "")
        return f"{entry['status']} {entry['signature']}: {entry.get('summary', '')}", entry.get("fix", "")
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


def entries_to_show(
    store: StateStore, kind: str | None, limit: int, changes_only: bool
) -> list[dict[str, Any]]:
    entries = store.decisions(kind=kind, limit=limit * 4 if changes_only else limit)
    if changes_only:
        entries = [e for e in entries if is_change(e)]
    return entries[:limit]


def print_entries(entries: list[dict[str, Any]], deployment: str, width: int | None, as_json: bool) -> None:
    if as_json:
        for entry in entries:
            print(json.dumps(entry, sort_keys=True))
        return
    table = Table(title=f"decision log of {deployment!r}, newest first")
    for column in ("at", "kind", "trigger", "what", "why"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        trigger = entry.get("trigger", {})
        what, why = describe(entry)
        table.add_row(
            entry["at"], entry["kind"], str(trigger.get("kind") or trigger.get("event_id") or ""), what, why
        )
    Console(width=width).print(table)
