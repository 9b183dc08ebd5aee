"""What the endpoint functions share at run time: account and region, the reconciler."""

from __future__ import annotations

import os
from typing import Any

from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.endpoints.reconcile import EndpointReconciler
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.state import StateStore


def account_of(context: Any) -> str:
    """The account from the invoked function's ARN (``arn:aws:lambda:region:account:function:name``)."""
    arn = str(getattr(context, "invoked_function_arn", "") or "")
    parts = arn.split(":")
    if len(parts) < 5 or not parts[4].isdigit():
        raise InvalidInputError(f"context.invoked_function_arn {arn!r} names no account")
    return parts[4]


def reconciler(config: DeploymentConfig, context: Any) -> EndpointReconciler:
    return EndpointReconciler(
        config,
        StateStore(config.state_table, config.deployment),
        aws.client("ecs"),
        account_id=account_of(context),
        region=os.environ.get("AWS_REGION", "us-east-1"),
        register_ecs=aws.client("ecs", max_attempts=1),
    )
