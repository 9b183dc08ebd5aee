"""A template resolved as CloudFormation would resolve it for one deployment.

One resolver for every check that reads the template as deployed: the AWS input rules
(`devtools.aws_input_rules`) and the functions' roles in the IAM check (`devtools.iam_check`).
It evaluates the intrinsic functions the template uses for one set of parameter values, and
names each resource as CloudFormation would: by its name property where the template names
it, by ``physical_ids`` where the caller knows the name (the names the stack hands the
functions), else by ``generated_name`` (CloudFormation's shape: stack, logical id, suffix).
``Ref`` and ``Fn::GetAtt ... Arn`` give what CloudFormation documents for each resource type
("Return values" in the resource reference); a type without a modelled ARN fails loudly when
``strict``, and gets a stand-in ARN otherwise.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

ACCOUNT = "123456789012"  # moto's account
REGION = "us-east-1"
STACK_NAME = "dynamo"
# Sample values of the parameters that have no default (required ones).
REQUIRED_SAMPLES = {
    "VpcId": "vpc-0123456789abcdef0",
    "TaskSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "LoadBalancerSubnetIds": "subnet-0123456789abcdef2,subnet-0123456789abcdef3",
    "NgcSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ngc-login-AbCdEf",
}
SSM_AMI = "ami-0123456789abcdef0"

NO_VALUE = object()

# The property whose value names the resource (what Ref returns, or the ARN's last part).
NAME_PROPERTIES = {
    "AWS::ECS::Cluster": ("ClusterName",),
    "AWS::Logs::LogGroup": ("LogGroupName",),
    "AWS::AutoScaling::AutoScalingGroup": ("AutoScalingGroupName",),
    "AWS::DynamoDB::Table": ("TableName",),
    "AWS::Lambda::Function": ("FunctionName",),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName",),
    "AWS::CloudWatch::Alarm": ("AlarmName",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::SQS::Queue": ("QueueName",),
    "AWS::ECS::CapacityProvider": ("Name",),
}
# Types whose Ref is their ARN (the others' is their name or id).
REF_IS_ARN = {"AWS::SNS::Topic", "AWS::IAM::ManagedPolicy"}


def cloudformation_name(stack_name: str) -> Callable[[str], str]:
    """A generated name as CloudFormation makes one: stack, logical id, a random suffix."""
    return lambda logical_id: f"{stack_name}-{logical_id}-1A2B3C4D5E6F7"


def any_generated_name(logical_id: str) -> str:
    """Every name CloudFormation could generate for ``logical_id``, as an IAM pattern."""
    return f"*-{logical_id}-*"


class Resolver:
    """Intrinsic functions evaluated for one set of parameters (the defaults where not given)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        *,
        stack_name: str = STACK_NAME,
        region: str = REGION,
        account: str = ACCOUNT,
        physical_ids: Mapping[str, str] | None = None,
        generated_name: Callable[[str], str] | None = None,
        replaced: frozenset[str] = frozenset(),
        strict: bool = False,
    ) -> None:
        """``replaced``: resources CloudFormation replaces; a reference to one names the new one.

        ``strict``: an ARN this module does not model is an error, not a stand-in.
        """
        self.template = template
        self.region, self.account, self.stack_name = region, account, stack_name
        self.physical_ids = dict(physical_ids or {})
        self.generated_name = generated_name or cloudformation_name(stack_name)
        self.replaced = replaced
        self.strict = strict
        self.parameters: dict[str, Any] = {}
        for name, spec in template.get("Parameters", {}).items():
            raw = parameters.get(name, spec.get("Default"))
            if raw is None:
                raw = REQUIRED_SAMPLES[name]
            raw = str(raw)
            if spec["Type"].startswith("List<") or spec["Type"] == "CommaDelimitedList":
                self.parameters[name] = raw.split(",") if raw else []
            elif spec["Type"].startswith("AWS::SSM::Parameter::Value<"):
                self.parameters[name] = SSM_AMI
            else:
                self.parameters[name] = raw
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/0",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Condition": self.condition,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Split": self._split,
            "Fn::Select": self._select,
            "Fn::If": self._if,
            "Fn::Equals": self._equals,
            "Fn::Not": self._not,
            "Fn::And": self._and,
            "Fn::Or": self._or,
            "Fn::Contains": self._contains,
            "Fn::Base64": self._base64,
            "Fn::GetAZs": self._get_azs,
            "Fn::ToJsonString": self._to_json_string,
        }
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions", {}):
            self.condition(name)

    # --- names and ARNs ---------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self.conditions[name]

    def physical(self, logical_id: str) -> str:
        if logical_id in self.physical_ids:
            return self.physical_ids[logical_id]
        resource = self.template["Resources"][logical_id]
        props = resource.get("Properties", {})
        for key in NAME_PROPERTIES.get(resource["Type"], ()):
            if key in props:
                return str(self.value(props[key]))
        generated = self.generated_name(logical_id)
        return generated + "-replacement" if logical_id in self.replaced else generated

    def arn(self, logical_id: str) -> str:
        """The resource's ARN, as ``Fn::GetAtt <id>.Arn`` gives it."""
        resource_type = self.template["Resources"][logical_id]["Type"]
        name = self.physical(logical_id)
        if name.startswith("arn:"):
            return name
        base, r, a = "arn:aws", self.region, self.account
        forms = {
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
        if resource_type in forms:
            return forms[resource_type]
        if self.strict:
            raise ValueError(f"{logical_id}: no ARN form for {resource_type} in devtools/cfn_resolve.py")
        return f"arn:aws:getatt:{r}:{a}:{name}/Arn"

    # --- evaluation -------------------------------------------------------------------------
    def value(self, node: Any) -> Any:
        """``node`` with every intrinsic function evaluated; ``AWS::NoValue`` items dropped."""
        if isinstance(node, list):
            return [v for v in (self.value(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(key, args)] = node.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                handler = self._functions.get(key)
                if handler is None:
                    raise NotImplementedError(f"intrinsic {key}")
                return handler(args)
        out = {}
        for k, v in node.items():
            resolved = self.value(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def ref(self, name: str) -> Any:
        return self._ref(name)

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if self.template["Resources"][name]["Type"] in REF_IS_ARN:
            return self.arn(name)
        return self.physical(name)

    def _get_att(self, args: Any) -> str:
        logical_id, attribute = args.split(".", 1) if isinstance(args, str) else args
        if attribute in ("Arn", "TopicArn"):
            return self.arn(logical_id)
        if self.strict:
            raise ValueError(f"{logical_id}.{attribute}: attribute not modelled in devtools/cfn_resolve.py")
        return f"arn:aws:getatt:{self.region}:{self.account}:{self.physical(logical_id)}/{attribute}"

    def _sub(self, args: Any) -> str:
        text, variables = (args, {}) if isinstance(args, str) else (args[0], self.value(args[1]))

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".")[0] in self.template["Resources"]:
                return str(self._get_att(name))
            resolved = self._ref(name)
            return ",".join(resolved) if isinstance(resolved, list) else str(resolved)

        return re.sub(r"\$\{([^}]+)\}", substitute, text)

    def _join(self, args: Any) -> str:
        separator, items = args
        return str(separator).join(str(i) for i in self.value(items))

    def _split(self, args: Any) -> list[str]:
        separator, text = args
        return str(self.value(text)).split(separator)

    def _select(self, args: Any) -> Any:
        index, items = self.value(args[0]), self.value(args[1])
        return items[int(index)]

    def _if(self, args: Any) -> Any:
        name, then, otherwise = args
        return self.value(then if self.condition(name) else otherwise)

    def _equals(self, args: Any) -> bool:
        left, right = self.value(args)
        return str(left) == str(right)

    def _not(self, args: Any) -> bool:
        return not self.value(args[0])

    def _and(self, args: Any) -> bool:
        return all(self.value(args))

    def _or(self, args: Any) -> bool:
        return any(self.value(args))

    def _contains(self, args: Any) -> bool:
        items, item = self.value(args)
        return item in items

    def _base64(self, args: Any) -> str:
        return base64.b64encode(str(self.value(args)).encode()).decode()

    def _get_azs(self, args: Any) -> list[str]:
        return [f"{self.region}a", f"{self.region}b"]

    def _to_json_string(self, args: Any) -> str:
        return json.dumps(self.value(args))

    def resources(self) -> dict[str, dict[str, Any]]:
        """Each resource CloudFormation would create with these parameters, properties resolved."""
        found = {}
        for logical_id, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            found[logical_id] = {
                "Type": resource["Type"],
                "Properties": self.value(copy.deepcopy(resource.get("Properties", {}))),
            }
        return found
