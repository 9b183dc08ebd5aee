"""Scrape address of a frontend task by network mode (pure)."""

from __future__ import annotations

from typing import Any

from dynamo_ecs.signals.discovery import ServiceTask, scrape_target


def task(mode: str, raw: dict[str, Any] | None = None, instance_ip: str | None = "10.0.1.4") -> ServiceTask:
    return ServiceTask(
        role="frontend",
        task_arn="arn:aws:ecs:us-east-1:123456789012:task/dynamo-GPU/abc",
        task_definition_arn="arn:td:1",
        network_mode=mode,
        container_instance_arn="arn:ci",
        ec2_instance_id="i-1",
        instance_ip=instance_ip,
        task=raw or {},
    )


def test_host_mode_uses_the_instance_ip_and_the_metrics_port() -> None:
    target, problem = scrape_target(task("host"), 8000)
    assert target is not None and problem is None
    assert target.url == "http://10.0.1.4:8000/metrics"
    assert target.key.endswith("/abc")


def test_awsvpc_uses_the_task_eni_ip() -> None:
    raw = {
        "attachments": [
            {
                "type": "ElasticNetworkInterface",
                "details": [{"name": "privateIPv4Address", "value": "10.0.2.9"}],
            }
        ]
    }
    target, _ = scrape_target(task("awsvpc", raw), 8000)
    assert target is not None and target.url == "http://10.0.2.9:8000/metrics"


def test_bridge_uses_the_host_port_bound_to_the_metrics_port() -> None:
    raw = {"containers": [{"networkBindings": [{"containerPort": 8000, "hostPort": 32768}]}]}
    target, _ = scrape_target(task("bridge", raw), 8000)
    assert target is not None and target.url == "http://10.0.1.4:32768/metrics"


def test_no_address_gives_a_reason_instead_of_a_target() -> None:
    assert scrape_target(task("bridge", {"containers": [{}]}), 8000)[1] == (
        "arn:aws:ecs:us-east-1:123456789012:task/dynamo-GPU/abc: bridge task has no host port bound to 8000"
    )
    assert "ENI" in str(scrape_target(task("awsvpc"), 8000)[1])
    assert "private IP unknown" in str(scrape_target(task("host", instance_ip=None), 8000)[1])
