"""The infra planes with TLS and authentication on loopback: the real etcd 3.5, etcdctl and
nats-server 2.11 started from `dynamo_ecs.planes.infra_settings`' own texts.

`secured_infra` runs the busybox writer's script with the infra secret's fields in its
environment (as ECS would hand them over), starts etcd with the TLS environment, runs the auth
set-up script with the real etcdctl, and starts nats-server on the written config. Only
addresses, ports and the files' directory differ from the task definition.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devtools.services import LOOPBACK, ManagedProcess, ServiceStartError, find_binary, free_port, http_ok
from dynamo_ecs.planes.infra_settings import (
    NATS_CONFIG,
    WRITER_SECRETS,
    etcd_auth_script,
    etcd_tls_environment,
    writer_script,
)


def writer_environment(infra_payload: dict[str, str]) -> dict[str, str]:
    """The writer container's environment: each ECS secret resolved from the infra secret's JSON."""
    return {variable: infra_payload[key] for variable, key in WRITER_SECRETS.items()}


def run_script(script: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class SecuredInfra:
    directory: Path
    etcd_port: int
    nats_port: int
    monitor_port: int
    cluster_port: int
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def etcd_url(self) -> str:
        return f"https://localhost:{self.etcd_port}"

    @property
    def nats_url(self) -> str:
        return f"tls://localhost:{self.nats_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{LOOPBACK}:{self.monitor_port}"


def _etcd_ready(directory: Path, port: int) -> bool:
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    context.load_cert_chain(str(directory / "root.pem"), str(directory / "root-key.pem"))
    import urllib.request

    try:
        with urllib.request.urlopen(
            f"https://localhost:{port}/health", timeout=1, context=context
        ) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def secured_infra(
    workdir: Path,
    infra_payload: dict[str, str],
    *,
    cluster_name: str | None = None,
    routes: list[str] | None = None,
) -> Iterator[SecuredInfra]:
    directory = workdir / "planes"
    infra = SecuredInfra(directory, free_port(), free_port(), free_port(), free_port())
    written = run_script(
        writer_script(
            str(directory),
            host=LOOPBACK,
            client_port=infra.nats_port,
            monitor_port=infra.monitor_port,
            cluster_name=cluster_name,
            cluster_port=infra.cluster_port,
            routes=routes,
            jetstream_dir=str(workdir / "jetstream"),
        ),
        writer_environment(infra_payload),
    )
    if written.returncode != 0:
        raise ServiceStartError(f"the writer script failed: {written.stderr}")
    peer_port = free_port()
    client_url, peer_url = f"https://{LOOPBACK}:{infra.etcd_port}", f"https://{LOOPBACK}:{peer_port}"
    etcd_env = {
        "ETCD_NAME": "infra",
        "ETCD_DATA_DIR": str(workdir / "etcd-data"),
        "ETCD_LISTEN_CLIENT_URLS": client_url,
        "ETCD_ADVERTISE_CLIENT_URLS": client_url,
        "ETCD_LISTEN_PEER_URLS": peer_url,
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": peer_url,
        "ETCD_INITIAL_CLUSTER": f"infra={peer_url}",
        **etcd_tls_environment(str(directory)),
    }
    etcd = ManagedProcess(
        "etcd",
        [find_binary("etcd")],
        ready=lambda: _etcd_ready(directory, infra.etcd_port),
        env=etcd_env,
        log_path=workdir / "etcd.log",
    )
    nats = ManagedProcess(
        "nats-server",
        [find_binary("nats-server"), "--config", str(directory / NATS_CONFIG)],
        ready=lambda: http_ok(f"{infra.monitor_url}/healthz"),
        log_path=workdir / "nats.log",
    )
    try:
        etcd.start()
        infra.processes.append(etcd)
        auth = run_script(
            etcd_auth_script(str(directory), etcdctl=find_binary("etcdctl"), endpoint=client_url, wait_s=20),
            {},
        )
        if auth.returncode != 0:
            raise ServiceStartError(f"the etcd auth script failed: {auth.stdout} {auth.stderr}")
        nats.start()
        infra.processes.append(nats)
        yield infra
    finally:
        for process in reversed(infra.processes):
            process.stop()


def dynamo_environment(
    infra: SecuredInfra, dynamo_payload: dict[str, str], ca_path: Path, base: dict[str, str] | None = None
) -> dict[str, str]:
    """A Dynamo process's environment as a GPU task gets it: ``base`` (the spec's values), the
    planes' URLs, each ECS secret resolved from the Dynamo holder's secret, the CA file's path."""
    from dynamo_ecs.planes.gpu_credentials import DYNAMO_SECRETS

    env = dict(base or {})
    env |= {name: dynamo_payload[key] for name, key in DYNAMO_SECRETS.items()}
    env |= {
        "ETCD_ENDPOINTS": infra.etcd_url,
        "NATS_SERVER": infra.nats_url,
        "NATS_TLS_CA_CERT_PATH": str(ca_path),
    }
    return env


def write_ca_like_the_task(directory: Path, dynamo_payload: dict[str, str]) -> Path:
    """Run the GPU task's CA writer command (its path moved into ``directory``)."""
    from dynamo_ecs.planes.gpu_credentials import CA_DIR, CA_WRITER_VARIABLE, add_plane_credentials

    rendered = add_plane_credentials({"containerDefinitions": []}, "arn:x", "busybox")
    writer = rendered["containerDefinitions"][-1]
    script = writer["command"][0].replace(CA_DIR, str(directory))
    directory.mkdir(parents=True, exist_ok=True)  # ECS mounts the task volume there
    done = run_script(script, {CA_WRITER_VARIABLE: dynamo_payload["ca_bundle"]})
    if done.returncode != 0:
        raise ServiceStartError(f"the CA writer failed: {done.stderr}")
    return directory / "ca.pem"
