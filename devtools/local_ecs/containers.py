"""Run an ECS container definition as a local process, changing as little as can be.

What a container runs is worked out as ECS and Docker do: ``entryPoint`` replaces the
image's ENTRYPOINT (and drops its CMD), ``command`` replaces the CMD. That argv then runs
here with these substitutions only, each forced by there being one machine and no images:

- **programs**: the image's binary (``/nats-server``, ``/usr/local/bin/etcd``) is the same
  program from this machine's packages, of the image tag's release line (checked); a shell
  image's ``sh`` is /bin/sh, and its ``wget`` this machine's, told to try once as busybox's
  does; Dynamo images run the PyPI Dynamo (``python`` on PATH is its environment), with the
  engine swapped for the mocker (`devtools.local_ecs.engine`);
- **addresses**: every private ``10.a.b.c`` in the environment becomes ``127.a.b.c``
  (`devtools.local_ecs.addresses`); "all interfaces" in a listen setting (nats-server's
  ``--cluster`` too) becomes the task's
  (or, in host network mode, the instance's) own loopback address, and so does the address
  Dynamo would detect for itself; a Dynamo bind address the host does not have stays one
  that cannot be bound (`LocalTaskLayout.host_address`);
- **names**: a private DNS name of the task's world (a Cloud Map name, `LocalTaskLayout.names`)
  in an environment value or a command word becomes the loopback address standing for it,
  where the task registered under it listens (`addresses.name_address`);
- **paths**: a volume's ``containerPath`` becomes a directory of the task, or, for a host
  volume (``host.sourcePath``), that path under a directory of the task's *instance*, which
  every task on the instance shares and which outlives the task (as the instance's disk);
  ``readOnly`` is not enforced here. A path in an environment value that is another
  container's mount of a task volume becomes that volume's directory too (a config file one
  container writes for another names paths only the other has). The process runs in a
  directory of its own, standing in for the image's WORKDIR.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.local_ecs import addresses
from devtools.local_ecs.engine import local_argv
from devtools.local_ecs.programs import Toolbox
from devtools.local_ecs.secrets import secret_environment
from dynamo_ecs.dynamo_release import release_of_image
from dynamo_ecs.endpoints.model_weights import host_volumes


class ContainerStartError(RuntimeError):
    """A container that cannot start here for the reason it would not start on ECS."""


@dataclass(frozen=True)
class ImageDefaults:
    """What ``docker inspect`` says of an image: its ENTRYPOINT, CMD and WORKDIR."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    workdir: str = "/"


# Keyed by the image repository's last path component.
IMAGE_DEFAULTS = {
    "nats": ImageDefaults(("/nats-server",), ("--config", "nats-server.conf")),
    "etcd": ImageDefaults((), ("/usr/local/bin/etcd",)),
    "busybox": ImageDefaults((), ("sh",)),
    "vllm-runtime": ImageDefaults((), ("bash",), "/workspace"),
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
LISTEN_VARIABLES = ("ETCD_LISTEN_CLIENT_URLS", "ETCD_LISTEN_PEER_URLS", "ETCD_LISTEN_METRICS_URLS")
# Bind hosts given as a bare address (nats-server's cluster host in a written config).
LISTEN_HOST_ONLY_VARIABLES = ("NATS_CLUSTER_HOST",)
# The programs of the images that the containers name by path, and their local stand-ins.
IMAGE_PROGRAMS = {"busybox": {"/bin/busybox"}, "etcd": {"/usr/local/bin/etcdctl"}}
# busybox run as ``busybox sh ...``: here the machine's sh (busybox's own applets are not needed).
_BUSYBOX_SHIM = '#!/bin/sh\n[ "$1" = sh ] && shift\nexec /bin/sh "$@"\n'
# Dynamo bind addresses that it also advertises to other hosts; unset, the host's detected address.
ADVERTISED_HOST_VARIABLES = ("DYN_TCP_RPC_HOST", "DYN_TCP_RESPONSE_STREAM_HOST")
# Dynamo bind addresses of servers that listen on all interfaces unless told otherwise.
LISTEN_HOST_VARIABLES = ("DYN_HTTP_HOST", "DYN_SYSTEM_HOST")
# An address of no host here (TEST-NET-2, RFC 5737): binding it fails as binding another host's does on EC2.
NOT_THIS_HOST = "198.51.100.1"
_ALL_INTERFACES = re.compile(r"//(0\.0\.0\.0|localhost|127\.0\.0\.1)(?=[:/]|$)")


def repository_name(image: str) -> str:
    reference = image.split("@", 1)[0]
    name = reference.rsplit(":", 1)[0] if ":" in reference.rsplit("/", 1)[-1] else reference
    return name.rsplit("/", 1)[-1]


def image_defaults(image: str) -> ImageDefaults:
    name = repository_name(image)
    if name not in IMAGE_DEFAULTS:
        raise ContainerStartError(f"image {image!r}: no local stand-in for {name!r} (devtools/local_ecs)")
    return IMAGE_DEFAULTS[name]


def container_argv(container: Mapping[str, Any]) -> list[str]:
    defaults = image_defaults(container["image"])
    entrypoint = container.get("entryPoint")
    command = container.get("command")
    if entrypoint:
        return [*entrypoint, *(command or [])]
    return [*defaults.entrypoint, *(command or defaults.cmd)]


def map_paths(text: str, mounts: Mapping[str, Path]) -> str:
    """Each volume's container path, where it starts a path in ``text``, becomes its local directory."""
    for container_path, local in sorted(mounts.items(), key=lambda item: -len(item[0])):
        text = re.sub(rf"(?<![\w/.-]){re.escape(container_path)}(?=/|\b|$)", str(local), text)
    return text


def instance_disk(workdir: Path, index: int) -> Path:
    """GPU instance ``index``'s root volume: what its user data wrote, what its tasks' host volumes bind."""
    return workdir / f"instance-{index}" / "disk"


def on_disk(disk: Path, host_path: str) -> Path:
    """Where an instance's absolute ``host_path`` is on this machine."""
    return disk / host_path.lstrip("/")


@dataclass
class ContainerPlan:
    """Everything needed to start one container here."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    essential: bool


@dataclass
class LocalTaskLayout:
    """Where one task's containers live on this machine, and at which loopback address."""

    root: Path
    address: str  # the task's address (awsvpc) or its instance's (host, bridge)
    toolbox: Toolbox
    model_dir: Path
    extra_engine_args: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    instance_disk: Path | None = None  # the instance's root volume, for host volumes (`instance_disk`)
    host_paths: dict[str, str] = field(default_factory=dict)  # host volume name -> sourcePath
    names: dict[str, str] = field(default_factory=dict)  # private DNS name -> its loopback address
    task_mounts: dict[str, str] = field(default_factory=dict)  # containerPath -> volume, any container

    def use_volumes(self, task_definition: Mapping[str, Any]) -> None:
        """The task definition's ``volumes``: those with a ``host.sourcePath`` are the instance's."""
        self.host_paths = host_volumes(dict(task_definition))
        self.task_mounts = {
            m["containerPath"]: m["sourceVolume"]
            for c in task_definition.get("containerDefinitions") or []
            for m in c.get("mountPoints") or []
        }

    def map_names(self, text: str) -> str:
        for name, address in sorted(self.names.items(), key=lambda item: -len(item[0])):
            text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", address, text)
        return text

    def image_programs(self, kind: str, word: str) -> str:
        """The image's own programs named by path in ``word`` become their local stand-ins."""
        for program in sorted(IMAGE_PROGRAMS.get(kind, ())):
            if program in word:
                word = re.sub(rf"(?<![\w/.-]){re.escape(program)}(?![\w/.-])", self.stand_in(program), word)
        return word

    def stand_in(self, program: str) -> str:
        if program == "/bin/busybox":
            shim = self.root / "programs" / "busybox"
            if not shim.exists():
                shim.parent.mkdir(parents=True, exist_ok=True)
                shim.write_text(_BUSYBOX_SHIM)
                shim.chmod(0o755)
            return str(shim)
        return self.toolbox.binary(Path(program).name)

    def volume_dir(self, name: str) -> Path:
        """A volume's local directory; as Docker does for a bind mount, it is made when missing."""
        if name in self.host_paths:
            if self.instance_disk is None:
                raise ContainerStartError(f"volume {name!r}: a host path, and this task has no instance")
            path = on_disk(self.instance_disk, self.host_paths[name])
        else:
            path = self.root / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def host_address(self, name: str, value: str | None) -> str:
        """A Dynamo bind address, as the task definition gives it, as the task's host would take it.

        Unset, it is the host's own address: Dynamo's detected address for the TCP request
        plane and response stream, all interfaces for the HTTP and system servers. Set, an
        address the host does not have cannot be bound on EC2 (``Cannot assign requested
        address``), so here it becomes `NOT_THIS_HOST`, which this machine does not have
        either: every 127.x would bind. The host's loopback has no stand-in (one machine has
        one loopback), so such a task does not start here rather than serve across hosts.
        """
        if value is None or addresses.to_loopback_text(value) == self.address:
            return self.address
        text = value.strip().strip("[]")
        if text.lower() == "localhost":
            text = "127.0.0.1"
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ContainerStartError(
                f"{name}={value!r}: an interface name or host name has no stand-in here; give an address"
            ) from None
        if address.is_unspecified:
            return self.address if name in LISTEN_HOST_VARIABLES else value  # Dynamo refuses it, as on EC2
        if address.is_loopback:
            raise ContainerStartError(
                f"{name}={value}: the host's own loopback, which no other host reaches; one machine has one "
                "loopback, so this task would serve across hosts here and not on ECS (remove the variable: "
                "Dynamo then uses the host's address)"
            )
        return NOT_THIS_HOST

    def plan(self, container: Mapping[str, Any]) -> ContainerPlan:
        mounts = {
            m["containerPath"]: self.volume_dir(m["sourceVolume"]) for m in container.get("mountPoints") or []
        }
        image = container["image"]
        kind = repository_name(image)
        argv = [
            self.image_programs(kind, self.map_names(map_paths(word, mounts)))
            for word in container_argv(container)
        ]
        task_mounts = {path: self.volume_dir(volume) for path, volume in self.task_mounts.items()}
        cwd = self.root / "containers" / container["name"]
        env = {
            "PATH": os.pathsep.join([str(self.toolbox.dynamo_bin), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(cwd),
            "TMPDIR": str(cwd / "tmp"),  # each container's /tmp is its own
            "LANG": "C.UTF-8",
        }
        for variable in container.get("environment") or []:
            value = self.map_names(addresses.to_loopback_text(variable["value"]))
            env[variable["name"]] = map_paths(value, task_mounts | mounts)
        # ECS resolves secrets with the execution role before the container starts; values as they are.
        env.update(secret_environment(dict(container)))
        for name in LISTEN_VARIABLES:
            if name in env:
                env[name] = _ALL_INTERFACES.sub(f"//{self.address}", env[name])
        for name in LISTEN_HOST_ONLY_VARIABLES:
            if env.get(name) == "0.0.0.0":  # noqa: S104 (the template's value, mapped)
                env[name] = self.address
        if kind == "vllm-runtime":
            release = release_of_image(image)
            cwd = self.toolbox.image_workdir(release)
            argv = local_argv(argv, release, str(self.model_dir), self.extra_engine_args)
            given = {v["name"]: v["value"] for v in container.get("environment") or []}
            for name in (*ADVERTISED_HOST_VARIABLES, *LISTEN_HOST_VARIABLES):
                env[name] = self.host_address(name, given.get(name))
            env.setdefault("HF_HUB_OFFLINE", "1")
        elif kind == "nats":
            self.toolbox.check_release("nats-server", image)
            words = [_ALL_INTERFACES.sub(f"//{self.address}", word) for word in argv[1:]]  # --cluster
            argv = [self.toolbox.binary("nats-server"), "--addr", self.address, *words]
        elif kind == "busybox":
            # busybox's wget makes one attempt; this machine's GNU wget retries 20 times unless told
            wgetrc = self.root / "containers" / container["name"] / "wgetrc"
            wgetrc.parent.mkdir(parents=True, exist_ok=True)
            wgetrc.write_text("tries = 1\n")
            env["WGETRC"] = str(wgetrc)
        elif kind == "etcd":
            self.toolbox.check_release("etcd", image)
            if argv and argv[0] == "/usr/local/bin/etcd":
                argv = [self.toolbox.binary("etcd"), *argv[1:]]
            # else: a shell copied into a volume (busybox) running the image's etcdctl
        env.update(self.extra_env)
        (self.root / "containers" / container["name"] / "tmp").mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        return ContainerPlan(container["name"], argv, env, cwd, bool(container.get("essential", True)))


@dataclass
class RunningContainer:
    plan: ContainerPlan
    process: subprocess.Popen[bytes]
    log_path: Path

    def exit_code(self) -> int | None:
        return self.process.poll()

    def group_alive(self) -> bool:
        """Whether a process of the container (its process group) still runs; zombies do not count."""
        self.process.poll()  # reap the first process
        return bool(_live_group_members(self.process.pid))

    def pids(self) -> list[int]:
        """The container's live processes (its process group)."""
        return _live_group_members(self.process.pid)

    def log_tail(self, lines: int = 20) -> str:
        """The log's first three lines (where a refused flag shows) and its last ``lines``."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        all_lines = _ANSI.sub("", text).splitlines()
        if len(all_lines) > lines + 3:
            all_lines = [*all_lines[:3], "...", *all_lines[-lines:]]
        return "\n".join(all_lines)

    def stop(self, grace_s: float = 10.0) -> None:
        """As ``docker stop``: SIGTERM to the container's first process only, then, after
        ``grace_s`` (the stop timeout) or once it has exited, SIGKILL to whatever is left."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        self.kill()

    def terminate(self) -> None:
        """The start of ``docker stop``: SIGTERM to the first process only."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """The end of ``docker stop``: SIGKILL to whatever is left; returns once the container is gone."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        # As `docker stop`, return once the container is gone, so its ports are free again.
        deadline = time.monotonic() + 5
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)


def _live_group_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that are not zombies (from /proc: this runs on Linux)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


# Every container this process started, so that one left running by an earlier deployment
# is found (`leftover_containers`) before its ports confuse the next one.
_STARTED: list[RunningContainer] = []


def leftover_containers() -> list[RunningContainer]:
    """Containers started here whose processes are still alive (reaped ones are forgotten)."""
    _STARTED[:] = [c for c in _STARTED if c.group_alive()]
    return list(_STARTED)


def start_container(plan: ContainerPlan, log_dir: Path) -> RunningContainer:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{plan.name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            plan.argv,
            cwd=plan.cwd,
            env=plan.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    container = RunningContainer(plan, process, log_path)
    _STARTED.append(container)
    return container


def wait_for_exit(container: RunningContainer, timeout_s: float) -> int:
    """For containers others depend on with condition SUCCESS (a config writer)."""
    try:
        return container.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        container.stop()
        raise ContainerStartError(f"{container.plan.name} did not exit within {timeout_s:.0f} s") from None
