"""Evaluate a template's intrinsic functions as CloudFormation would for one deployment.

A `Deployment` names the stack's parameters and its resources' physical names. Where the
template names a resource (``ClusterName: !Sub ${DeploymentName}-gpu``) the name follows from
the parameters; where the stack hands a name to the functions (``DYNAMO_ECS_STATE_TABLE: !Ref
StateTable``), the caller supplies it (`Deployment.physical_ids`). A name CloudFormation
generates and nobody supplied becomes ``*-<LogicalId>-*``, the shape of CloudFormation's
generated names (stack name, logical id, random suffix): a policy naming such a resource then
matches only resources named like CloudFormation names them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"  # moto's account
PARTITION = "aws"

# For each resource type: the attribute CloudFormation's Ref returns and the ARN built from a
# physical name. Sources: each type's "Return values" in the CloudFormation resource reference.
_NAME_PROPERTY = {
    "AWS::ECS::Cluster": "ClusterName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::AutoScaling::AutoScalingGroup": "AutoScalingGroupName",
    "AWS::ECS::CapacityProvider": "Name",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::ECS::TaskDefinition": "Family",
}


class UnresolvableError(ValueError):
    """An intrinsic this resolver does not evaluate, or a reference to nothing."""


@dataclass
class Deployment:
    """One deployment of a template: parameter values, region, and names given from outside."""

    template: Mapping[str, Any]
    parameters: Mapping[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    account: str = ACCOUNT
    # logical id -> physical name (what Ref returns for named resources, or the name for others)
    physical_ids: Mapping[str, str] = field(default_factory=dict)

    # --- parameters and conditions ---------------------------------------------------------
    def parameter(self, name: str) -> str:
        if name in self.parameters:
            return str(self.parameters[name])
        declared = self.template.get("Parameters", {}).get(name)
        if declared is None:
            raise UnresolvableError(f"no parameter {name}")
        if "Default" not in declared:
            raise UnresolvableError(f"parameter {name} has no default: give it a value")
        default = declared["Default"]
        return ",".join(map(str, default)) if isinstance(default, list) else str(default)

    def condition(self, name: str) -> bool:
        expression = self.template.get("Conditions", {}).get(name)
        if expression is None:
            raise UnresolvableError(f"no condition {name}")
        return bool(self._condition_value(expression))

    def _condition_value(self, expression: Any) -> Any:
        if isinstance(expression, dict) and len(expression) == 1:
            ((key, arg),) = expression.items()
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._condition_value(arg[0])
            if key == "Fn::And":
                return all(self._condition_value(a) for a in arg)
            if key == "Fn::Or":
                return any(self._condition_value(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
        return self.resolve(expression)

    # --- resources -------------------------------------------------------------------------
    def _resource(self, logical_id: str) -> Mapping[str, Any]:
        resource = self.template.get("Resources", {}).get(logical_id)
        if resource is None:
            raise UnresolvableError(f"no resource {logical_id}")
        return dict(resource)

    def physical_name(self, logical_id: str) -> str:
        if logical_id in self.physical_ids:
            return self.physical_ids[logical_id]
        resource = self._resource(logical_id)
        prop = _NAME_PROPERTY.get(resource["Type"])
        named = resource.get("Properties", {}).get(prop) if prop else None
        if named is not None:
            return str(self.resolve(named))
        return f"*-{logical_id}-*"

    def arn(self, logical_id: str) -> str:
        resource_type = self._resource(logical_id)["Type"]
        name = self.physical_name(logical_id)
        if name.startswith("arn:"):
            return name
        base = f"arn:{PARTITION}"
        r, a = self.region, self.account
        arns = {
            "AWS::ECS::Cluster": f"{base}:ecs:{r}:{a}:cluster/{name}",
            "AWS::DynamoDB::Table": f"{base}:dynamodb:{r}:{a}:table/{name}",
            "AWS::SNS::Topic": f"{base}:sns:{r}:{a}:{name}",
            "AWS::IAM::Role": f"{base}:iam::{a}:role/{name}",
            "AWS::IAM::ManagedPolicy": f"{base}:iam::{a}:policy/{name}",
            "AWS::Logs::LogGroup": f"{base}:logs:{r}:{a}:log-group:{name}:*",
            "AWS::SQS::Queue": f"{base}:sqs:{r}:{a}:{name}",
            "AWS::KMS::Key": f"{base}:kms:{r}:{a}:key/{name}",
            "AWS::Lambda::Function": f"{base}:lambda:{r}:{a}:function:{name}",
            "AWS::AutoScaling::AutoScalingGroup": (
                f"{base}:autoscaling:{r}:{a}:autoScalingGroup:*:autoScalingGroupName/{name}"
            ),
            "AWS::ECS::CapacityProvider": f"{base}:ecs:{r}:{a}:capacity-provider/{name}",
        }
        if resource_type not in arns:
            raise UnresolvableError(
                f"{logical_id}: no ARN form for {resource_type} in devtools/iam_check/resolve.py"
            )
        return arns[resource_type]

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.template.get("Parameters", {}) or name in self.parameters:
            return self.parameter(name)
        resource_type = self._resource(name)["Type"]
        # These types' Ref is their ARN; the others' is their name.
        if resource_type in ("AWS::SNS::Topic", "AWS::IAM::ManagedPolicy"):
            return self.arn(name)
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute == "TopicArn":
            return self.arn(logical_id)
        raise UnresolvableError(
            f"{logical_id}.{attribute}: attribute not modelled in devtools/iam_check/resolve.py"
        )

    # --- intrinsic functions ---------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function evaluated; ``AWS::NoValue`` items dropped."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [i for i in items if i is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            if key.startswith("Fn::"):
                raise UnresolvableError(f"{key} is not evaluated by devtools/iam_check/resolve.py")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return _SUB_VARIABLE.sub(replace, text)


_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()
