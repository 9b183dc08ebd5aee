"""The real Dynamo 1.6.1 on the authenticated, encrypted planes (docs/security-planes.md).

The infra side runs the task's own texts (devtools/planes.py); each Dynamo process gets the
environment a GPU task gets from the operator's rendering: the spec's values, the planes'
TLS URLs, the Dynamo holder's secrets resolved, the CA written by the task's CA writer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.local_ecs.client import chat, get
from devtools.local_ecs.programs import TINY_MODEL, Toolbox
from devtools.planes import SecuredInfra, dynamo_environment, secured_infra, write_ca_like_the_task
from devtools.services import LOOPBACK, ManagedProcess, free_port, http_ok
from dynamo_ecs.planes import credentials
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")
NOW = dt.datetime.now(dt.UTC)


@dataclass
class Deployment:
    infra: SecuredInfra
    payloads: dict[str, dict[str, str]]
    ca_path: Path
    frontend_url: str
    workdir: Path


def spec_environment() -> dict[str, str]:
    """The default frontend spec's values, with ports of our own (other tests may hold the fixed ones)."""
    container = load_default_spec("frontend")["containerDefinitions"][0]
    env = {v["name"]: v["value"] for v in container["environment"]}
    env |= {"DYN_TCP_RPC_PORT": str(free_port()), "DYN_TCP_RESPONSE_STREAM_PORT": str(free_port())}
    return env | {"DYN_TCP_RPC_HOST": LOOPBACK, "HF_HUB_OFFLINE": "1"}


def dynamo_process(
    name: str, args: list[str], env: dict[str, str], workdir: Path, ready: object
) -> ManagedProcess:
    """A Dynamo process in a directory of its own (its HOME and working directory), as a container."""
    home = workdir / name
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    toolbox = Toolbox()
    base = {
        "PATH": os.pathsep.join([str(toolbox.dynamo_bin), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
    }
    command = " ".join(shlex.quote(w) for w in [str(toolbox.dynamo_bin / "python"), "-m", *args])
    return ManagedProcess(
        name,
        ["sh", "-c", f"cd {shlex.quote(str(home))} && exec {command}"],
        ready=ready,  # type: ignore[arg-type]
        env=base | env,
        log_path=workdir / f"{name}.log",
    )


def models(frontend_url: str) -> list[str]:
    status, body = get(f"{frontend_url}/v1/models", timeout_s=2)
    return [m["id"] for m in json.loads(body).get("data", [])] if status == 200 else []


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("secured-dynamo")
    payloads = credentials.holder_payloads(credentials.make_authority("dynamo", NOW), [], NOW)
    # The member as rolled after a rotation's 'trust' step: it accepts Dynamo's user and the next
    # one (`rotate`); the frontend and worker below present the user in use.
    current = (payloads["dynamo"]["nats_user"], payloads["dynamo"]["nats_password"])
    upcoming = (credentials.next_nats_user(current[0]), credentials.new_password())
    payloads["infra"]["nats_dynamo_users"] = credentials.nats_users_text([current, upcoming])
    payloads["next_dynamo"] = {**payloads["dynamo"], "nats_user": upcoming[0], "nats_password": upcoming[1]}
    with secured_infra(workdir, payloads["infra"]) as infra:
        ca_path = write_ca_like_the_task(workdir / "task-volume", payloads["dynamo"])
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"
        frontend = dynamo_process(
            "frontend",
            ["dynamo.frontend", "--router-mode", "kv", "--http-port", str(port)],
            dynamo_environment(infra, payloads["dynamo"], ca_path, spec_environment()),
            workdir,
            lambda: http_ok(f"{url}/health"),
        )
        worker = dynamo_process(
            "worker",
            ["dynamo.mocker", "--model-path", str(TINY_MODEL), "--model-name", "m"],
            dynamo_environment(infra, payloads["dynamo"], ca_path, spec_environment()),
            workdir,
            lambda: "m" in models(url),
        )
        try:
            frontend.start(timeout=60)
            worker.start(timeout=90)
            yield Deployment(infra, payloads, ca_path, url, workdir)
        finally:
            worker.stop()
            frontend.stop()


def test_dynamo_serves_with_the_planes_credentials(deployment: Deployment) -> None:
    results = [chat(deployment.frontend_url, "m", max_tokens=4) for _ in range(5)]
    assert [r.status for r in results] == [200] * 5, results[-1].body


def test_a_worker_with_the_next_nats_user_serves_next_to_processes_with_the_old_one(
    deployment: Deployment,
) -> None:
    # Given a GPU task rolled after the rotation's 'issue' step: its worker presents the next NATS
    # user, while the frontend and the other worker still present the old one
    env = dynamo_environment(
        deployment.infra, deployment.payloads["next_dynamo"], deployment.ca_path, spec_environment()
    )
    assert env["NATS_AUTH_USERNAME"] == "dynamo-2"
    worker = dynamo_process(
        "next-user-worker",
        ["dynamo.mocker", "--model-path", str(TINY_MODEL), "--model-name", "m-next"],
        env,
        deployment.workdir,
        lambda: "m-next" in models(deployment.frontend_url),
    )
    worker.start(timeout=90)
    try:
        # Then it registers and serves, and so does the deployment started before the rotation
        results = [chat(deployment.frontend_url, name, max_tokens=4) for name in ("m-next", "m") * 3]
        assert [r.status for r in results] == [200] * 6, results[-1].body
    finally:
        worker.stop()


def test_a_worker_with_the_operators_identity_never_registers(deployment: Deployment) -> None:
    # Given a worker that holds the operator's certificate (etcd: no key permission) instead of Dynamo's
    env = dynamo_environment(
        deployment.infra, deployment.payloads["dynamo"], deployment.ca_path, spec_environment()
    )
    env |= {
        "ETCD_AUTH_CLIENT_CERT": deployment.payloads["operator"]["client_cert"],
        "ETCD_AUTH_CLIENT_KEY": deployment.payloads["operator"]["client_key"],
    }
    intruder = dynamo_process(
        "intruder",
        ["dynamo.mocker", "--model-path", str(TINY_MODEL), "--model-name", "intruder"],
        env,
        deployment.workdir,
        lambda: True,
    )
    intruder.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "intruder" not in models(deployment.frontend_url):
            time.sleep(0.5)
        # Then the frontend never lists it, and the real deployment still serves
        assert "intruder" not in models(deployment.frontend_url)
        assert chat(deployment.frontend_url, "m", max_tokens=4).ok
    finally:
        intruder.stop()
