"""Which address Dynamo 1.6.1 advertises when the task definition names none, on a host like an ECS one.

An ECS GPU instance has its primary interface (the default route) and Docker's bridge
``docker0`` (172.17.0.1); a host-mode container sees both. The default specs leave the
advertised address to Dynamo's detection, so it must pick the default route's interface. Run
in a network namespace of its own (``unshare -n``, root only) with two veth interfaces, a
``docker0`` created first and an ``eth0`` on 198.18.0.5 (a benchmarking range, RFC 2544)
carrying the default route; etcd, nats-server and the prefill worker (the default spec's
environment) run inside. Nothing leaves the namespace: the veth peers go nowhere.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.local_ecs.programs import TINY_MODEL, Toolbox
from dynamo_ecs.cross_host import PREFILL_REQUEST_PLANE
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")

PRIMARY = "198.18.0.5"
DOCKER_BRIDGE = "172.17.0.1"

NAMESPACE_SETUP = f"""
set -e
ip link set lo up
ip link add docker0 type veth peer name docker0-peer
ip addr add {DOCKER_BRIDGE}/16 dev docker0
ip link set docker0 up; ip link set docker0-peer up
ip link add eth0 type veth peer name eth0-peer
ip addr add {PRIMARY}/24 dev eth0
ip link set eth0 up; ip link set eth0-peer up
ip route add default via 198.18.0.1 dev eth0
"""


def prefill_environment() -> dict[str, str]:
    container = load_default_spec("prefill")["containerDefinitions"][0]
    env = {v["name"]: v["value"].replace("IP_ADDRESS", "127.0.0.1") for v in container["environment"]}
    return env | {"HF_HUB_OFFLINE": "1"}


def test_dynamo_advertises_the_default_routes_address_not_dockers(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip for a network namespace")
    toolbox = Toolbox()
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in prefill_environment().items())
    script = f"""{NAMESPACE_SETUP}
cd {tmp_path}
{toolbox.binary("etcd")} --data-dir etcd --listen-client-urls http://127.0.0.1:2379 \\
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 > etcd.log 2>&1 &
{toolbox.binary("nats-server")} --addr 127.0.0.1 --port 4222 > nats.log 2>&1 &
sleep 2
{exports}
{toolbox.dynamo_bin}/python -m dynamo.mocker --model-path {TINY_MODEL} --model-name m \\
  --disaggregation-mode prefill > worker.log 2>&1 &
for _ in $(seq 60); do
  {toolbox.binary("etcdctl")} --endpoints http://127.0.0.1:2379 get --prefix v1/instances/ \
    > keys.txt 2>&1 || true
  grep -q generate keys.txt && break
  sleep 0.5
done
ss -ltnH > listening.txt
kill $(jobs -p) 2>/dev/null || true
wait
"""
    completed = subprocess.run(
        ["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=90
    )
    if completed.returncode != 0 and "Operation not permitted" in completed.stderr:
        pytest.skip(f"no network namespace here: {completed.stderr.strip()}")
    keys = (tmp_path / "keys.txt").read_text()
    listening = (tmp_path / "listening.txt").read_text()
    port = PREFILL_REQUEST_PLANE.first
    # Then the worker binds and advertises the default route's address, never Docker's bridge
    assert f'"tcp":"{PRIMARY}:{port}/' in keys, (keys, (tmp_path / "worker.log").read_text()[-2000:])
    assert f"{PRIMARY}:{port} " in listening
    assert DOCKER_BRIDGE not in keys + listening
