"""A Dynamo bind address in a GPU task definition, as the task's host would take it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from devtools.local_ecs.containers import NOT_THIS_HOST, ContainerStartError, LocalTaskLayout
from devtools.local_ecs.programs import Toolbox

INSTANCE = "127.32.1.5"  # moto's 10.32.1.5
ALL_INTERFACES = str(ipaddress.IPv4Address(0))


def layout(tmp_path: Path) -> LocalTaskLayout:
    return LocalTaskLayout(root=tmp_path, address=INSTANCE, toolbox=Toolbox(), model_dir=tmp_path)


@pytest.mark.parametrize("name", ["DYN_TCP_RPC_HOST", "DYN_TCP_RESPONSE_STREAM_HOST", "DYN_HTTP_HOST"])
def test_unset_or_the_instances_own_address_is_the_instances_address(tmp_path: Path, name: str) -> None:
    assert layout(tmp_path).host_address(name, None) == INSTANCE
    assert layout(tmp_path).host_address(name, "10.32.1.5") == INSTANCE


@pytest.mark.parametrize("value", ["10.32.1.4", "10.32.250.250", "172.17.0.1", "192.0.2.2"])
def test_an_address_the_host_lacks_stays_unbindable(tmp_path: Path, value: str) -> None:
    # Every 127.x binds on one machine; on EC2 another host's address does not
    assert layout(tmp_path).host_address("DYN_TCP_RPC_HOST", value) == NOT_THIS_HOST


@pytest.mark.parametrize("value", ["127.0.0.1", "localhost", "::1"])
def test_loopback_is_refused_with_the_reason(tmp_path: Path, value: str) -> None:
    with pytest.raises(ContainerStartError, match="loopback"):
        layout(tmp_path).host_address("DYN_TCP_RPC_HOST", value)


def test_all_interfaces_is_the_instance_for_listeners_and_left_to_dynamo_for_advertised_ones(
    tmp_path: Path,
) -> None:
    assert layout(tmp_path).host_address("DYN_HTTP_HOST", ALL_INTERFACES) == INSTANCE
    unchanged = layout(tmp_path).host_address("DYN_TCP_RPC_HOST", ALL_INTERFACES)
    assert unchanged == ALL_INTERFACES  # Dynamo refuses it, as on EC2
