"""The capacity reconciler wired to AWS clients (what the scaler function runs)."""

from __future__ import annotations

from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.scaling.reconcile import CapacityReconciler
from dynamo_ecs.state import StateStore


def capacity_reconciler(config: DeploymentConfig) -> CapacityReconciler:
    return CapacityReconciler(
        config,
        StateStore(config.state_table, config.deployment),
        aws.client("ecs"),
        aws.client("cloudwatch"),
        aws.client("sns") if config.alert_topic_arn else None,
        autoscaling=aws.client("autoscaling") if config.gpu_autoscaling_group else None,
    )
