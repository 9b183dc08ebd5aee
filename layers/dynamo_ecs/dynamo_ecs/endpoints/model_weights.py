"""Model weights from the GPU instance's root volume (template.yaml's ``ModelWeightsS3Uri``). Pure.

With the parameter set, each GPU instance's user data copies ``s3://bucket/prefix`` to
``/var/lib/dynamo-ecs/model/bucket/prefix`` at first boot, and the custom resource hands that
directory to the operator. Both GPU task definitions then mount it read-only at
`CONTAINER_PATH` and the engine loads the model from there, served under the stack's
``ModelId`` (``--model /models/weights --served-model-name <ModelId>``), so the name clients
and the load balancer's ``/v1/models/<ModelId>`` check use stays the same.

Spec validation (`check_host_volumes`) lets a task mount no other host path, and only
read-only; a redeploy may not change the served model of such a spec (`served_models`):
the instances hold one model's files, and a new name would serve them under it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

from dynamo_ecs.dynamo_release import engine_commands, flag_value
from dynamo_ecs.endpoints.specs_store import MODEL_FLAG
from dynamo_ecs.shell_words import ShellSyntaxError

HOST_ROOT = "/var/lib/dynamo-ecs/model"
CONTAINER_PATH = "/models/weights"
VOLUME_NAME = "model-weights"
# HOST_ROOT/bucket/prefix, as the user data names it from ModelWeightsS3Uri's AllowedPattern.
HOST_DIR_PATTERN = (
    r"^/var/lib/dynamo-ecs/model/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/[A-Za-z0-9_-][A-Za-z0-9._-]*){1,8}$"
)
_HOST_DIR_RE = re.compile(HOST_DIR_PATTERN)


def with_model_weights(spec: dict[str, Any], host_dir: str, served_model: str) -> dict[str, Any]:
    """Every engine command loads ``host_dir``'s files (mounted read-only) and serves ``served_model``."""
    spec["volumes"] = [v for v in spec.get("volumes") or [] if v.get("name") != VOLUME_NAME]
    spec["volumes"].append({"name": VOLUME_NAME, "host": {"sourcePath": host_dir}})
    replacement = f"--model {CONTAINER_PATH} --served-model-name {shlex.quote(served_model)}"
    for container in spec.get("containerDefinitions") or []:
        command = container.get("command")
        if not isinstance(command, list):
            continue
        changed = False
        for index, part in enumerate(command):
            if isinstance(part, str) and MODEL_FLAG.search(part):
                command[index] = MODEL_FLAG.sub(lambda _: replacement, part)
                changed = True
        if changed:
            mounts = [m for m in container.get("mountPoints") or [] if m.get("sourceVolume") != VOLUME_NAME]
            mounts.append({"sourceVolume": VOLUME_NAME, "containerPath": CONTAINER_PATH, "readOnly": True})
            container["mountPoints"] = mounts
    return spec


def host_volumes(spec: dict[str, Any]) -> dict[str, str]:
    """The spec's host bind volumes: name -> host ``sourcePath``."""
    volumes = spec.get("volumes")
    found: dict[str, str] = {}
    for volume in volumes if isinstance(volumes, list) else []:
        host = volume.get("host") if isinstance(volume, dict) else None
        if isinstance(host, dict) and isinstance(host.get("sourcePath"), str):
            found[str(volume.get("name"))] = host["sourcePath"]
    return found


def served_models(spec: dict[str, Any]) -> set[str]:
    """The names the engine commands of ``spec`` serve when they load weights from a host volume.

    Empty when no engine loads its model from a mounted host directory (weights from the hub).
    """
    mounted = _mounted_host_paths(spec)
    names: set[str] = set()
    for container in spec.get("containerDefinitions") or []:
        if not isinstance(container, dict):
            continue
        paths = mounted.get(str(container.get("name")), set())
        for args in _engine_args(container):
            model = flag_value(args, "--model")
            if model is not None and any(model == p or model.startswith(f"{p}/") for p in paths):
                names.add(flag_value(args, "--served-model-name") or model)
    return names


def check_host_volumes(spec: dict[str, Any]) -> Iterator[str]:
    """A GPU task may bind only the instance's model weights directory, and only read-only.

    Any other host path (``/``, ``/var/run/docker.sock``, ``/etc``) would hand the container
    the instance; a writable mount would let one task change what the next loads.
    """
    hosts = host_volumes(spec)
    volumes = spec.get("volumes")
    for index, volume in enumerate(volumes if isinstance(volumes, list) else []):
        if not isinstance(volume, dict):
            continue
        path = (volume.get("host") or {}).get("sourcePath") if isinstance(volume.get("host"), dict) else None
        if path is not None and not (isinstance(path, str) and _HOST_DIR_RE.match(path)):
            yield (
                f"$.volumes[{index}].host.sourcePath: {str(path)[:80]!r} is not the instance's model "
                f"weights directory; a GPU task may mount only {HOST_ROOT}/<bucket>/<prefix> "
                "(template.yaml's ModelWeightsS3Uri): remove the volume"
            )
        options = (volume.get("dockerVolumeConfiguration") or {}).get("driverOpts")
        if isinstance(options, dict) and "device" in options:
            yield (
                f"$.volumes[{index}].dockerVolumeConfiguration.driverOpts.device: a bind of a host "
                "device or path; a GPU task may mount only the model weights directory: remove it"
            )
    containers = spec.get("containerDefinitions")
    for c_index, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, dict):
            continue
        mounts = container.get("mountPoints")
        for m_index, mount in enumerate(mounts if isinstance(mounts, list) else []):
            if (
                isinstance(mount, dict)
                and mount.get("sourceVolume") in hosts
                and mount.get("readOnly") is not True
            ):
                yield (
                    f"$.containerDefinitions[{c_index}].mountPoints[{m_index}].readOnly: the host "
                    f"directory {hosts[str(mount['sourceVolume'])]} is mounted writable; set 'readOnly': true"
                )


def _mounted_host_paths(spec: dict[str, Any]) -> dict[str, set[str]]:
    """Per container name, the container paths where a host volume is mounted."""
    hosts = host_volumes(spec)
    found: dict[str, set[str]] = {}
    for container in spec.get("containerDefinitions") or []:
        if not isinstance(container, dict):
            continue
        for mount in container.get("mountPoints") or []:
            if isinstance(mount, dict) and mount.get("sourceVolume") in hosts:
                found.setdefault(str(container.get("name")), set()).add(str(mount.get("containerPath")))
    return found


def _engine_args(container: dict[str, Any]) -> list[list[str]]:
    argv = [str(w) for w in (container.get("entryPoint") or []) + (container.get("command") or [])]
    try:
        return engine_commands(argv)
    except ShellSyntaxError:
        return []  # the release check reports it
