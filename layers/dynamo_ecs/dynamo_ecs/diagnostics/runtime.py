"""The diagnostics function's work: classify an event, add the evidence, record once, alert once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynamo_ecs import aws
from dynamo_ecs.clock import now as clock_now
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.diagnostics.classify import KIND_TITLES, Finding, Resolution, classify, redact
from dynamo_ecs.diagnostics.record import DiagnosisLog
from dynamo_ecs.observability import logger
from dynamo_ecs.state import StateStore

LOG_LINES = 20


class Diagnostician:
    def __init__(
        self,
        config: DeploymentConfig,
        store: StateStore,
        ecs: Any,
        logs: Any,
        sns: Any,
        clock: Callable[[], float] = clock_now,
    ) -> None:
        self.config = config
        self.store = store
        self.ecs = ecs
        self.logs = logs
        self.sns = sns
        self.diagnoses = DiagnosisLog(store, clock)

    def handle(self, event: Any) -> dict[str, Any]:
        """Raises `InvalidInputError` for an event that is not an EventBridge event."""
        result = classify(event, self.config)
        if result is None:
            return {"status": "nothing wrong"}
        if isinstance(result, Resolution):
            return self._resolve(result)
        lines = (
            self.last_log_lines(result) if result.kind == "tasks_fail_to_start" and result.task_arn else []
        )
        observed = self.diagnoses.observe(result, lines)
        logger.info(
            "diagnosis",
            extra={"signature": observed.signature, "observed": observed.status, "kind": result.kind},
        )
        alerted = self._announce(observed.signature) if observed.needs_alert else False
        return {"status": observed.status, "signature": observed.signature, "alerted": alerted}

    def _resolve(self, resolution: Resolution) -> dict[str, Any]:
        closed = self.diagnoses.resolve(resolution)
        for data in closed:
            self.store.append_decision(
                "diagnosis",
                {
                    "trigger": {"event_id": resolution.event_id, "reason": resolution.reason},
                    "status": "resolved",
                    "signature": data["signature"],
                    "service": data["service"],
                    "summary": data["summary"],
                },
                self.config.scaling.decision_log_ttl_days,
            )
        return {"status": "resolved", "closed": [d["signature"] for d in closed]}

    def _announce(self, signature: str) -> bool:
        """Write the decision-log entry and send the alert, once per opening (at least once)."""
        data = self.diagnoses.claim_alert(signature)
        if data is None:
            return False
        self.store.append_decision(
            "diagnosis",
            {
                "trigger": {"event_id": data["event_id"], "source": data["source"]},
                "status": "open",
                "diagnosis_kind": data["kind"],  # "kind" is the decision-log entry's own (diagnosis)
                **{k: data[k] for k in ("signature", "service", "summary", "evidence", "fix", "log_lines")},
            },
            self.config.scaling.decision_log_ttl_days,
        )
        if self.config.alert_topic_arn:
            self.sns.publish(
                TopicArn=self.config.alert_topic_arn,
                Subject=f"{self.config.deployment}: {KIND_TITLES[data['kind']]} ({data['service']})"[:100],
                Message=alert_text(data),
            )
        self.diagnoses.mark_alerted(signature)
        return True

    def last_log_lines(self, finding: Finding) -> list[str]:
        """The stopped container's last log lines (awslogs), secrets masked; a note if unreadable."""
        try:
            definition = self.ecs.describe_task_definition(taskDefinition=finding.task_definition_arn)[
                "taskDefinition"
            ]
            containers = definition["containerDefinitions"]
            container = next((c for c in containers if c["name"] == finding.container), containers[0])
            log_config = container.get("logConfiguration") or {}
            options = log_config.get("options") or {}
            if log_config.get("logDriver") != "awslogs" or "awslogs-group" not in options:
                return ["(no awslogs log configuration: no log lines)"]
            task_id = str(finding.task_arn).rsplit("/", 1)[-1]
            stream = f"{options.get('awslogs-stream-prefix', '')}/{container['name']}/{task_id}".lstrip("/")
            events = self.logs.get_log_events(
                logGroupName=options["awslogs-group"],
                logStreamName=stream,
                limit=LOG_LINES,
                startFromHead=False,
            )["events"]
        except Exception as exc:  # evidence is best effort: the diagnosis stands without it
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            return [f"(log lines unavailable: {code})"]
        return [redact(str(e["message"]).rstrip()) for e in events][-LOG_LINES:]


def alert_text(data: dict[str, Any]) -> str:
    parts = [
        f"{data['summary']} [{KIND_TITLES[data['kind']]}]",
        f"What AWS said: {data['evidence']}",
        f"Likely fix: {data['fix']}",
    ]
    if data.get("log_lines"):
        parts.append("Last log lines:\n" + "\n".join(f"  {line}" for line in data["log_lines"]))
    parts.append(
        f"Diagnosis {data['signature']} (first seen {data['first_seen']}). Further occurrences are "
        "counted, not sent again; `dynamo-ecs status` shows it until the service is steady again."
    )
    return "\n\n".join(parts)


def diagnostician(config: DeploymentConfig) -> Diagnostician:
    return Diagnostician(
        config,
        StateStore(config.state_table, config.deployment),
        aws.client("ecs"),
        aws.client("logs"),
        aws.client("sns"),
    )
