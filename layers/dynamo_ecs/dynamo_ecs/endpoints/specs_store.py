"""Each GPU service's spec, kept in the state table so redeploys and infra changes agree.

Until a redeploy stores one, a service's spec is the default from `dynamo_ecs.specs` (the
Dynamo example's task definition) with the family the config names.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.specs import load_default_spec
from dynamo_ecs.state import Record, StateStore

# The value after --model: one shell word, quoted parts included (what shlex.quote writes).
MODEL_FLAG = re.compile(r"""(--model\s+)((?:'[^']*'|"[^"]*"|[^\s'"])+)""")


def spec_record_name(role: ServiceRole) -> str:
    return f"spec#{role}"


def read_spec(
    store: StateStore, config: DeploymentConfig, role: ServiceRole, record: Record | None = None
) -> tuple[dict[str, Any], Record]:
    """The stored spec (or the default one) and the record it came from (version 0: none).

    ``record``: the spec record when the caller already read it (one batched read).
    """
    record = record if record is not None else store.get_record(spec_record_name(role))
    if record.version and record.data.get("spec"):
        return dict(record.data["spec"]), record
    spec = load_default_spec(role)
    spec["family"] = config.service(role).family
    return spec, record


def with_image(spec: dict[str, Any], image: str) -> dict[str, Any]:
    """Every container of the spec runs ``image``."""
    for container in _containers(spec):
        container["image"] = image
    return spec


def with_model(spec: dict[str, Any], model: str) -> dict[str, Any]:
    """Replace the value of ``--model`` in every command string; refuse a spec without one.

    The commands run under ``sh -c``: the model goes in shell-quoted, so even a value that
    slipped past validation is one literal argument (a checked id needs no quotes and
    stays as it is).
    """
    quoted = shlex.quote(model)
    replaced = False
    for container in _containers(spec):
        command = container.get("command")
        if not isinstance(command, list):
            continue
        for index, part in enumerate(command):
            if isinstance(part, str) and MODEL_FLAG.search(part):
                command[index] = MODEL_FLAG.sub(lambda m: m.group(1) + quoted, part)
                replaced = True
    if not replaced:
        raise InvalidInputError(
            f"model: the {spec.get('family')!r} spec has no '--model' in its command; "
            "send a 'command' or a whole 'spec' instead"
        )
    return spec


def with_command(spec: dict[str, Any], command: list[str]) -> dict[str, Any]:
    """The first container (the Dynamo worker) runs ``command``."""
    containers = _containers(spec)
    if not containers:
        raise InvalidInputError("spec.containerDefinitions: empty; a spec needs one container")
    containers[0]["command"] = list(command)
    return spec


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec's container objects (anything else is left for validation to name)."""
    containers = spec.get("containerDefinitions")
    return [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []
