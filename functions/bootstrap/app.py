"""Bootstrap: the ``Custom::DynamoGpuServices`` resource. Creates, updates and deletes the GPU services.

CloudFormation always gets an answer: SUCCESS with data, FAILED with the reason (bad
properties, no infra task running, an AWS error), or FAILED just before a timeout.
"""

from __future__ import annotations

from typing import Any

from dynamo_ecs.config import load_config
from dynamo_ecs.endpoints.cfn_response import CloudFormationAnswer, answerable, drain_budget_s, parse_request
from dynamo_ecs.endpoints.gpu_services import handle
from dynamo_ecs.endpoints.runtime import reconciler
from dynamo_ecs.observability import logger

CONFIG = load_config()


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    if not answerable(event):
        reason = "not a CloudFormation custom resource request: no ResponseURL to answer"
        logger.warning("event ignored", extra={"reason": reason})
        return {"status": "ignored", "reason": reason}
    answer = CloudFormationAnswer(event, physical_id=f"{CONFIG.deployment}-gpu-services")
    timer = answer.answer_before_timeout(context)
    try:
        request = parse_request(event)
        data = handle(
            request.request_type,
            request.resource_properties,
            reconciler(CONFIG, context),
            wait_s=drain_budget_s(context),
        )
        answer.send("SUCCESS", data=data)
    except Exception as exc:  # every failure must reach CloudFormation, or the stack hangs
        logger.exception("custom resource failed")
        answer.send("FAILED", reason=f"{type(exc).__name__}: {exc}")
    finally:
        if timer:
            timer.cancel()
    return {"status": answer.sent, "physical_id": answer.physical_id}
