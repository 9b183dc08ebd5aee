"""Shared fixtures: real moto server, nats-server and etcd on free loopback ports.

Servers are session-scoped (one per pytest worker) because starting them costs seconds;
moto's state is reset before every test that asks for `aws`, so tests never see each other's
resources. The AWS environment points at moto with dummy credentials, so nothing here can
reach a real AWS account.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import aws_state_rules, netguard
from devtools.cloudformation_stub import CloudFormationStub
from devtools.iam_check import enforce as iam_check
from devtools.local_ecs import addresses
from devtools.local_ecs.containers import leftover_containers
from devtools.services import (
    EtcdServer,
    MotoServer,
    NatsServer,
    aws_test_environment,
    etcd_server,
    moto_server,
    nats_server,
)
from dynamo_ecs import aws
from dynamo_ecs.signals.discovery import forget_task_definitions

# Before any AWS client exists: every handler's calls are checked against its role.
iam_check.install()
# Before any handler module is loaded (each reads its configuration once, as at a cold start):
# the stack's GPU role ARNs, as the template hands them to the endpoint functions.
for _name, _value in aws_test_environment("http://127.0.0.1:1").items():
    if _name.startswith("DYNAMO_ECS_"):
        os.environ.setdefault(_name, _value)

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run when ``--dist loadgroup`` would split an ``xdist_group`` across workers.

    The real-Dynamo tests and the demo share fixed addresses (an instance's :8000), so their
    group must run on one worker. pytest-xdist marks a grouped test by a ``@group`` suffix on
    its node id; with pytest 9.2 that suffix silently stops taking effect (pytest-xdist#1386)
    and the group runs on both workers, each test answering the other's requests.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    split = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if split:
        raise pytest.UsageError(
            f"--dist loadgroup is not grouping ({split[0]} has no @group suffix): this pytest and "
            "pytest-xdist do not work together (pytest-xdist#1386); install requirements-dev.txt"
        )


def _vpc_octet_per_worker() -> None:
    """Each xdist worker's real deployments get a VPC (and so 127.N.x addresses) of their own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        base = addresses.vpc_octet()
        os.environ["LOCAL_ECS_VPC_OCTET"] = str((base + int(worker[2:])) % 256)


_vpc_octet_per_worker()


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """No test may open a connection off this machine (moto hands out 10.x addresses)."""
    netguard.install()
    yield
    netguard.uninstall()


@pytest.fixture(autouse=True)
def _every_call_within_its_role() -> Iterator[None]:
    """A test fails when a handler made an AWS call its role in template.yaml does not allow.

    The call itself was answered AccessDenied, as AWS would; a handler that catches the error
    would otherwise let the test pass on moto and fail on AWS (docs/testing.md, "IAM").
    """
    iam_check.take_violations()
    yield
    found = iam_check.take_violations()
    if found:
        lines = "\n".join(f"- {v}" for v in dict.fromkeys(str(v) for v in found))
        pytest.fail(f"AWS calls outside the calling function's role:\n{lines}", pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def _aws_refuses_in_the_wrong_state() -> Iterator[None]:
    """Every AWS client a test makes refuses what AWS refuses in the resource's state.

    moto accepts SetInstanceProtection on an instance in a launch hook, or the removal of a
    capacity provider whose tasks are still stopping; AWS does not (`devtools.aws_state_rules`).
    """
    aws_state_rules.install()
    yield
    aws_state_rules.uninstall()


@pytest.fixture(autouse=True)
def _no_task_definition_from_another_test() -> None:
    """The collector caches what it read of each task definition revision for its container's
    life (revisions are immutable on AWS); a fresh moto account reuses the same ARNs."""
    forget_task_definitions()


@pytest.fixture(autouse=True)
def aws_states() -> Iterator[aws_state_rules.AwsStateRules]:
    """The states moto cannot hold (an instance in a launch hook, a task STOPPING), clean per test."""
    aws_state_rules.rules.clear()
    yield aws_state_rules.rules
    aws_state_rules.rules.clear()


@pytest.fixture(autouse=True, scope="module")
def _no_process_outlives_its_module() -> Iterator[None]:
    """Every process a module starts (`devtools.local_ecs`) stops with the module.

    One left running keeps its ports (a frontend on an instance's :8000) and would answer the
    next module's requests; so the module that leaked fails, by name, and its leftovers are
    stopped before the next module starts.
    """
    yield
    leftovers = leftover_containers()
    for container in leftovers:
        container.stop(grace_s=1.0)
    if leftovers:
        names = ", ".join(f"{c.plan.name} (pid {c.process.pid}, log {c.log_path})" for c in leftovers)
        pytest.fail(f"processes this module started were still running after it: {names}")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def serial_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto server answering one request at a time (`devtools.moto_serial`): its conditional
    writes are then atomic, as DynamoDB's and Secrets Manager's are. A module whose tests run
    handlers concurrently overrides `moto` with it; on the threaded server two concurrent
    conditional writes can both succeed, which AWS never lets happen."""
    with moto_server(tmp_path_factory.mktemp("moto-serial"), serial=True) as server:
        yield server


@pytest.fixture
def aws_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A clean moto account and an environment that talks only to it."""
    moto.reset()
    for key, value in aws_test_environment(moto.url).items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    yield moto
    aws.reset_clients()


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with nats_server(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def cloudformation() -> Iterator[CloudFormationStub]:
    """A loopback stand-in for CloudFormation's response URL: what custom resources answer."""
    stub = CloudFormationStub()
    yield stub
    stub.close()


@pytest.fixture
def state_table(aws_env: MotoServer) -> str:
    """The state table, created on moto from template.yaml's own properties."""
    from devtools.template import create_state_table

    name = "dynamo-ecs-state"
    create_state_table(name)
    return name
