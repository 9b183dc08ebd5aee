"""The stack every test of the three-member tier starts from: template.yaml with its defaults
(``InfraMembers`` 3, the planes on) created on moto's CloudFormation."""

from __future__ import annotations

import pytest

from devtools.moto_stack import DeployedStack, deploy_on_moto, network
from devtools.services import MotoServer

PARAMETERS = {
    "DeploymentName": "dynamo",
    "NgcSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-login-AbCdEf",
}


@pytest.fixture
def deployed(aws_env: MotoServer) -> DeployedStack:
    return deploy_on_moto("dynamo", {**PARAMETERS, **network()})
