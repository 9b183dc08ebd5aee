"""Bootstrap: the ``Custom::DynamoGpuServices`` resource. Creates, updates and deletes the GPU services.

CloudFormation always gets an answer: SUCCESS with data, FAILED with the reason (a bad
configuration, bad properties, no infra task running, an AWS error), or FAILED just before a
timeout. The configuration is loaded inside the handler, so a bad parameter combination is
a FAILED answer naming the fix, not an import error CloudFormation never hears about.
"""

from __future__ import annotations

from typing import Any

from dynamo_ecs.config import load_config
from dynamo_ecs.endpoints.cfn_response import CloudFormationAnswer, answerable, drain_budget_s, parse_request
from dynamo_ecs.endpoints.gpu_services import NOT_CREATED_SUFFIX, handle
from dynamo_ecs.endpoints.runtime import reconciler
from dynamo_ecs.errors import ConfigError
from dynamo_ecs.observability import logger


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    if not answerable(event):
        reason = "not a CloudFormation custom resource request: no ResponseURL to answer"
        logger.warning("event ignored", extra={"reason": reason})
        return {"status": "ignored", "reason": reason}
    logical_id = event.get("LogicalResourceId")
    logical_id = logical_id if isinstance(logical_id, str) and 0 < len(logical_id) <= 200 else "GpuServices"
    answer = CloudFormationAnswer(event, physical_id=f"{logical_id}{NOT_CREATED_SUFFIX}")
    timer = answer.answer_before_timeout(context)
    try:
        request = parse_request(event)
        if request.request_type == "Delete" and answer.physical_id.endswith(NOT_CREATED_SUFFIX):
            # The Create failed before anything was made (the rollback's Delete): nothing to undo,
            # and a configuration that failed the Create must not fail the rollback too.
            answer.send("SUCCESS", data={"Deleted": "", "Deregistered": "0", "Drained": "true"})
            return {"status": answer.sent, "physical_id": answer.physical_id}
        try:
            config = load_config()
        except ConfigError as exc:
            raise ConfigError(f"{exc} (stack parameters: see docs/template.md, 'Parameter rules')") from None
        if request.request_type == "Create":
            answer.physical_id = f"{config.deployment}-gpu-services"
        data = handle(
            request.request_type,
            request.resource_properties,
            reconciler(config, context),
            deadline_s=drain_budget_s(context),
        )
        answer.send("SUCCESS", data=data)
    except Exception as exc:  # every failure must reach CloudFormation, or the stack hangs
        logger.exception("custom resource failed")
        answer.send("FAILED", reason=f"{type(exc).__name__}: {exc}")
    finally:
        if timer:
            timer.cancel()
    return {"status": answer.sent, "physical_id": answer.physical_id}
