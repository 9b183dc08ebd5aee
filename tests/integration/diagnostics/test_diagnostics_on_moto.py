"""The diagnostics function against moto: recorded once, alerted once, resolved, with log lines."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from devtools.services import MotoServer
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.diagnostics.record import DiagnosisLog
from dynamo_ecs.state import StateStore
from tests.integration.diagnostics.conftest import Alerts, sample


def diagnoses(config: DeploymentConfig) -> dict[str, dict[str, Any]]:
    return {d["signature"]: d for d in DiagnosisLog(StateStore(config.state_table, config.deployment)).all()}


def diagnosis_entries(config: DeploymentConfig) -> list[dict[str, Any]]:
    return StateStore(config.state_table, config.deployment).decisions(kind="diagnosis")


def test_a_placement_failure_delivered_again_and_again_is_one_diagnosis_and_one_alert(
    diagnostics: Any, config: DeploymentConfig, alerts: Alerts
) -> None:
    # Given a task that cannot be placed, reported three times (one a redelivery of the same event)
    first = sample("placement_failure")
    again = copy.deepcopy(first)
    again["id"], again["time"] = "second-report", "2026-11-28T11:07:10Z"
    results = [diagnostics.lambda_handler(e, LambdaContext()) for e in (first, first, again)]
    # Then it is opened once, counted twice, and alerted once
    assert [r["status"] for r in results] == ["opened", "duplicate", "counted"]
    assert [r["alerted"] for r in results] == [True, False, False]
    [found] = diagnoses(config).values()
    assert found["status"] == "open" and found["count"] == 2 and found["last_seen"] == "2026-11-28T11:07:10Z"
    [alert] = alerts.received()
    assert alert["Subject"] == "dynamo: no GPU capacity (frontend)"
    assert "RESOURCE:GPU" in alert["Message"] and "dynamo-ecs doctor" in alert["Message"]
    # And the decision log has the diagnosis once, with its fix
    [entry] = diagnosis_entries(config)
    assert entry["kind"] == "diagnosis" and entry["diagnosis_kind"] == "no_gpu_capacity"
    assert entry["status"] == "open" and entry["fix"]


def test_an_image_that_cannot_be_pulled_and_a_quota_are_two_diagnoses_two_alerts(
    diagnostics: Any, config: DeploymentConfig, alerts: Alerts
) -> None:
    for name in ("task_pull_failed", "asg_vcpu_limit", "task_pull_failed"):
        diagnostics.lambda_handler(sample(name), LambdaContext())
    assert set(diagnoses(config)) == {
        "registry_auth/frontend/pull-unauthorized",
        "no_gpu_capacity/gpu-instances/quota",
    }
    subjects = sorted(a["Subject"] for a in alerts.received())
    assert subjects == [
        "dynamo: no GPU capacity (gpu-instances)",
        "dynamo: registry authentication (frontend)",
    ]


def test_concurrent_twins_send_one_alert(diagnostics: Any, config: DeploymentConfig, alerts: Alerts) -> None:
    event = sample("task_pull_timeout")
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: results.append(diagnostics.lambda_handler(event, LambdaContext())))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for r in results if r["alerted"]) == 1
    assert len(alerts.received()) == 1
    assert len(diagnosis_entries(config)) == 1


def test_an_alert_that_failed_to_send_is_sent_by_the_retry(
    diagnostics: Any, config: DeploymentConfig, alerts: Alerts, monkeypatch: Any
) -> None:
    # Given the topic cannot be published to on the first delivery (Lambda then retries)
    broken = config.model_copy(update={"alert_topic_arn": alerts.topic_arn + "-missing"})
    monkeypatch.setattr(diagnostics, "CONFIG", broken)
    event = sample("task_oom")
    try:
        diagnostics.lambda_handler(event, LambdaContext())
        raise AssertionError("the publish should have failed")
    except aws.client("sns").exceptions.NotFoundException:
        pass
    # When the retry arrives after the alert claim has expired
    record = StateStore(config.state_table, config.deployment).get_record(
        "diagnosis/tasks_fail_to_start/frontend/out-of-memory"
    )
    StateStore(config.state_table, config.deployment).put_record(
        "diagnosis/tasks_fail_to_start/frontend/out-of-memory",
        {**record.data, "alert_claim_until": 0},
        record.version,
    )
    monkeypatch.setattr(diagnostics, "CONFIG", config)
    result = diagnostics.lambda_handler(event, LambdaContext())
    # Then the alert goes out, once
    assert result == {
        "status": "duplicate",
        "signature": "tasks_fail_to_start/frontend/out-of-memory",
        "alerted": True,
    }
    assert len(alerts.received()) == 1
    assert diagnostics.lambda_handler(event, LambdaContext())["alerted"] is False


def test_steady_state_resolves_a_late_event_changes_nothing_a_new_one_reopens(
    diagnostics: Any, config: DeploymentConfig, alerts: Alerts
) -> None:
    diagnostics.lambda_handler(sample("placement_failure"), LambdaContext())  # 11:02:10
    resolved = diagnostics.lambda_handler(sample("steady_state"), LambdaContext())  # 11:40:00
    assert resolved == {"status": "resolved", "closed": ["no_gpu_capacity/frontend/placement-gpu"]}
    assert diagnoses(config)["no_gpu_capacity/frontend/placement-gpu"]["status"] == "resolved"
    # A report from before the steady state, delivered late, reopens nothing
    late = sample("placement_failure")
    late["id"] = "late"
    assert diagnostics.lambda_handler(late, LambdaContext())["status"] == "late"
    # A new failure after it is a new episode with its own alert
    new = sample("placement_failure")
    new["id"], new["time"] = "new", "2026-11-28T12:00:00Z"
    assert diagnostics.lambda_handler(new, LambdaContext())["status"] == "opened"
    assert diagnoses(config)["no_gpu_capacity/frontend/placement-gpu"]["episode"] == 2
    assert len(alerts.received()) == 2
    assert [e["status"] for e in diagnosis_entries(config)] == ["open", "resolved", "open"]


def test_a_steady_state_of_another_service_closes_nothing(diagnostics: Any, config: DeploymentConfig) -> None:
    diagnostics.lambda_handler(sample("task_pull_timeout"), LambdaContext())  # prefill
    assert diagnostics.lambda_handler(sample("steady_state"), LambdaContext())["closed"] == []


def test_an_exited_container_brings_its_last_log_lines_with_secrets_masked(
    diagnostics: Any, config: DeploymentConfig, alerts: Alerts
) -> None:
    # Given the prefill task definition logs to its log group, and the task wrote its last lines
    event = sample("task_exited")
    detail = event["detail"]
    ecs = aws.client("ecs")
    registered = ecs.register_task_definition(
        family="dynamo-prefill",
        containerDefinitions=[
            {
                "name": "dynamo-prefill",
                "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
                "memory": 40960,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/dynamo-prefill",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "prefill",
                    },
                },
            }
        ],
    )["taskDefinition"]
    detail["taskDefinitionArn"] = registered["taskDefinitionArn"]
    task_id = detail["taskArn"].rsplit("/", 1)[-1]
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="/ecs/dynamo-prefill")
    stream = f"prefill/dynamo-prefill/{task_id}"
    logs.create_log_stream(logGroupName="/ecs/dynamo-prefill", logStreamName=stream)
    lines = [f"INFO step {i}" for i in range(30)] + [
        "HF_TOKEN=hf_abcdefghijklmnop",
        "sh: 1: cd: can't cd to examples/backends/vllm",
    ]
    now_ms = int(time.time() * 1000)  # CloudWatch Logs refuses events older than 14 days
    logs.put_log_events(
        logGroupName="/ecs/dynamo-prefill",
        logStreamName=stream,
        logEvents=[{"timestamp": now_ms + i, "message": line} for i, line in enumerate(lines)],
    )
    # When the stopped task is diagnosed
    result = diagnostics.lambda_handler(event, LambdaContext())
    # Then the diagnosis and its alert carry the last 20 lines, the token masked
    found = diagnoses(config)[result["signature"]]
    assert len(found["log_lines"]) == 20 and found["log_lines"][-1] == lines[-1]
    assert "HF_TOKEN=****" in found["log_lines"]
    [alert] = alerts.received()
    assert "can't cd to examples/backends/vllm" in alert["Message"] and "hf_abc" not in alert["Message"]


def test_unreadable_logs_leave_a_note_not_a_failure(diagnostics: Any, config: DeploymentConfig) -> None:
    result = diagnostics.lambda_handler(sample("task_exited"), LambdaContext())  # no such task definition
    [note] = diagnoses(config)[result["signature"]]["log_lines"]
    assert note.startswith("(log lines unavailable: ")


def test_what_is_not_an_event_is_ignored_and_changes_nothing(
    diagnostics: Any, config: DeploymentConfig
) -> None:
    result = diagnostics.lambda_handler({"hello": "world"}, LambdaContext())
    assert result["status"] == "ignored" and "detail-type" in result["reason"]
    assert diagnoses(config) == {}
    assert diagnostics.lambda_handler(sample("task_scaled_in"), LambdaContext()) == {
        "status": "nothing wrong"
    }


@pytest.fixture(scope="module")
def moto(serial_moto: MotoServer) -> MotoServer:
    """Handlers run concurrently here: moto answering one request at a time, so that conditional
    writes are atomic as on AWS (tests/conftest.py, `serial_moto`)."""
    return serial_moto
