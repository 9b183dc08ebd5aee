"""The ``Custom::DynamoPlaneCredentials`` resource: the planes' CA, certificates and NATS passwords.

Create and Update make whatever secret is missing (never re-issue one that exists) and answer
with each holder's secret ARN, which the task definitions' ``secrets`` refer to; Delete removes
the secrets. CloudFormation always gets an answer (docs/security-planes.md).

Properties: ``Deployment`` (the secrets' name prefix), ``ServerNames`` (the members' names the
member certificate must carry), ``Rotate`` (optional: ``trust``, ``issue`` or ``retire``, one
rotation step after the secrets exist; `dynamo_ecs.planes.rotation`; an Update from ``retire``
back to ``issue``, a rollback, rotates nothing), ``DryRun`` ("true":
report, change nothing), ``SecretsLayout`` (not read: a new value makes CloudFormation send the
Update that upgrades secrets an older stack made to the fields today's task definitions use).
"""

from __future__ import annotations

import re
from typing import Any

from dynamo_ecs.endpoints.cfn_response import (
    CloudFormationAnswer,
    CustomResourceRequest,
    answerable,
    parse_request,
)
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.observability import logger
from dynamo_ecs.planes.rotation import STEPS, rotate
from dynamo_ecs.planes.secrets_store import delete_plane_secrets, ensure_plane_secrets

_DEPLOYMENT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
NOT_CREATED = "plane-credentials-not-created"


def _rotation_step(props: dict[str, Any]) -> str | None:
    step = props.get("Rotate", "")
    if step in ("", None, "none"):
        return None
    if step not in STEPS:
        raise InvalidInputError(
            f"Rotate: {step!r} is not a rotation step; give one of {', '.join(STEPS)} in order"
        )
    return str(step)


def _rolled_back_from_retire(request: CustomResourceRequest) -> bool:
    """An Update from ``retire`` to ``issue``: the rollback of a deploy that ran ``retire`` (or a
    step moved back by hand). The old CA is gone and every leaf is the new CA's, so there is
    nothing to undo; refusing would leave the stack in UPDATE_ROLLBACK_FAILED."""
    return (
        request.request_type == "Update"
        and request.old_resource_properties.get("Rotate") == "retire"
        and request.resource_properties.get("Rotate") == "issue"
    )


def _properties(props: dict[str, Any]) -> tuple[str, list[str], bool]:
    deployment = props.get("Deployment")
    if not isinstance(deployment, str) or not _DEPLOYMENT.match(deployment):
        raise InvalidInputError(
            f"Deployment: {deployment!r} is not a deployment name (1-100 letters, digits, '_', '.', '-'); "
            "pass the stack's DeploymentName"
        )
    names = props.get("ServerNames", [])
    if isinstance(names, str):  # CloudFormation passes a CommaDelimitedList joined when given as one string
        names = [n.strip() for n in names.split(",") if n.strip()]
    dry_run = str(props.get("DryRun", "false")).lower()
    if dry_run not in ("true", "false"):
        raise InvalidInputError(f"DryRun: {props.get('DryRun')!r} is not true or false")
    return deployment, names, dry_run == "true"


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    if not answerable(event):
        reason = "not a CloudFormation custom resource request: no ResponseURL to answer"
        logger.warning("event ignored", extra={"reason": reason})
        return {"status": "ignored", "reason": reason}
    answer = CloudFormationAnswer(event, physical_id=NOT_CREATED)
    timer = answer.answer_before_timeout(context)
    try:
        request = parse_request(event)
        if request.request_type == "Delete" and answer.physical_id == NOT_CREATED:
            answer.send("SUCCESS", data={"Deleted": ""})
            return {"status": answer.sent, "physical_id": answer.physical_id}
        deployment, names, dry_run = _properties(request.resource_properties)
        if request.request_type == "Delete":
            deleted = delete_plane_secrets(deployment, dry_run=dry_run)
            answer.send("SUCCESS", data={"Deleted": ",".join(deleted)})
        else:
            answer.physical_id = f"{deployment}-plane-credentials"
            step = _rotation_step(request.resource_properties)
            if step and _rolled_back_from_retire(request):
                logger.info(
                    "rotation step not run", extra={"reason": "Rotate moved back from retire to issue"}
                )
                step = None
            made = ensure_plane_secrets(deployment, names, dry_run=dry_run)
            # A dry run before the first deploy has nothing to rotate yet.
            rotated = (
                rotate(deployment, step, dry_run=dry_run) if step and not (dry_run and made.created) else []
            )
            data = {
                f"{holder.capitalize()}SecretArn": arn for holder, arn in made.arns.items() if holder != "ca"
            }
            data |= {
                "Created": ",".join(made.created),
                "Updated": ",".join(made.updated),
                "Rotated": ",".join(rotated),
            }
            answer.send("SUCCESS", data=data)
    except Exception as exc:  # every failure must reach CloudFormation, or the stack hangs
        logger.exception("custom resource failed")
        answer.send("FAILED", reason=f"{type(exc).__name__}: {exc}")
    finally:
        if timer:
            timer.cancel()
    return {"status": answer.sent, "physical_id": answer.physical_id}
