"""Check a GPU service's spec whole, before anything is stored or registered. Pure.

A spec is the input of ``RegisterTaskDefinition`` with our placeholders left in. It is
checked in three layers, and every problem is reported at once, each naming the JSON path
of the field and the fix:

1. **placeholders**: the spec is rendered at a sample endpoint (`render.render_task_definition`),
   so a placeholder glued to other text (``IP_ADDRESS_x``) is refused here and not at the
   next infra replacement;
2. **the API's own input shape**: botocore's ``ParamValidator`` against the ECS service
   model that ships with botocore (offline): required members, unknown fields, types,
   lengths and ranges. Enums and booleans-for-integers, which that validator does not
   check, are checked against the same model;
3. **the rules ECS applies on top** (`ECS_RULES`): task cpu and memory units and Fargate's
   combinations, GPU counts as positive integers, image references, at least one essential
   container, unique container names, container memory within the task's, and the
   ``ETCD_ENDPOINTS`` variable the operator fills.

4. **the Dynamo release line** of the image (`release_check.check_dynamo_release`): the
   flags, paths and KV transfer config that release's image accepts;
5. **cross-host networking** (`network_check.check_cross_host_networking`): host network
   mode, the ports other GPU hosts call pinned to those template.yaml opens, the event plane
   on NATS, no loopback advertised;
6. **host volumes** (`model_weights.check_host_volumes`): the only host path a GPU task may
   mount is the instance's model weights directory, and only read-only.

Further checks plug in as one more `SpecCheck` through ``validate_spec(..., checks=...)`` or
by extending `DEFAULT_CHECKS`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

from dynamo_ecs.endpoints.model_weights import check_host_volumes
from dynamo_ecs.endpoints.network_check import check_cross_host_networking
from dynamo_ecs.endpoints.release_check import check_dynamo_release
from dynamo_ecs.errors import InvalidInputError, PlaceholderError
from dynamo_ecs.infra import InfraEndpoint

# registry[:port]/path[:tag][@sha256:digest], lower-case path components as OCI references have.
IMAGE_PATTERN = (
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_IMAGE_RE = re.compile(IMAGE_PATTERN)
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_POSITIVE_INT_RE = re.compile(r"^[1-9][0-9]{0,3}$")
# ECS quotes task sizes as units ("1024") or as "1 vCPU" / "2 GB" (case-insensitive).
_CPU_RE = re.compile(r"^\s*(?:(\d+)|(\d+(?:\.\d+)?)\s*vcpu)\s*$", re.IGNORECASE)
_MEMORY_RE = re.compile(r"^\s*(?:(\d+)|(\d+(?:\.\d+)?)\s*gb)\s*$", re.IGNORECASE)
EC2_TASK_CPU_RANGE = (128, 196608)  # units: 0.125 to 192 vCPU
CONTAINER_MIN_MEMORY_MIB = 6  # Docker's floor for a container
MAX_SPEC_BYTES = 64 * 1024  # RegisterTaskDefinition's request limit
MAX_TAGS = 50  # per resource; the operator adds one (its rendering digest)
# Fargate's valid (cpu units -> memory MiB) combinations for Linux tasks.
FARGATE_SIZES: dict[int, range] = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
    8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}
# Where validation renders a spec: placeholders are filled as they would be on a deploy.
SAMPLE_ENDPOINT = InfraEndpoint(task_arn="validation", ip="192.0.2.10", started_at=None)
SAMPLE_ACCOUNT = "123456789012"
SAMPLE_REGION = "us-east-1"

SpecCheck = Callable[[dict[str, Any]], Iterator[str]]
"""One rule over a rendered spec: yields ``"<json path>: <what is wrong>; <the fix>"``."""


class InvalidSpecError(InvalidInputError):
    """A spec that ECS would refuse or that the operator cannot fill; nothing was stored."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid {where}: " + "; ".join(problems))


# -- model ids ----------------------------------------------------------------------------------

_HF_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_LOCAL_PATH = re.compile(r"^(?:/[A-Za-z0-9._-]+)+/?$")
MAX_MODEL_PATH = 1024


def check_model_id(value: str) -> str:
    """``value`` if it is a Hugging Face repo id (``org/name`` or ``name``) or an absolute local path.

    Repo ids as the Hub accepts them: letters, digits, ``-``, ``_`` and ``.``; each part 1-96
    characters that start and end with a letter or digit; no ``--`` or ``..``. A local path:
    ``/`` then the same characters, no ``..`` step. Either way nothing a shell reads as syntax,
    and the value is quoted when it is put into a command (`specs_store.with_model`).
    """
    if value.startswith("/"):
        if len(value) > MAX_MODEL_PATH or not _LOCAL_PATH.match(value) or "/../" in f"{value}/":
            raise ValueError(
                "a local model path is absolute and uses only letters, digits, '/', '.', '-' and '_' "
                "(no '..'), e.g. /models/Qwen3-8B"
            )
        return value
    parts = value.split("/")
    if (
        len(parts) > 2
        or not all(_HF_PART.match(part) for part in parts)
        or "--" in value
        or ".." in value
        or value.endswith(".git")
    ):
        raise ValueError(
            "not a Hugging Face repo id: write org/name (letters, digits, '-', '_', '.'; "
            "each part at most 96 characters), e.g. Qwen/Qwen3-8B, or an absolute local path"
        )
    return value


# -- layer 2: the API's input shape ------------------------------------------------------------


@cache
def register_input_shape() -> Any:
    """RegisterTaskDefinition's input shape from the ECS model botocore ships (no network)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("ecs")
    return model.operation_model("RegisterTaskDefinition").input_shape


_JSON_TYPES = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _path(name: str) -> str:
    return "$" + ("" if not name else name if name.startswith((".", "[")) else "." + name)


def _botocore_problems(spec: dict[str, Any]) -> list[str]:
    """botocore's ParamValidator findings as ``path: problem; fix``."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(spec, register_input_shape())
    # ``_errors`` holds (kind, name, details) tuples: the structured form of its report. Should a
    # botocore release drop it, its text report is used as is rather than nothing.
    found = getattr(report, "_errors", None)
    if report.has_errors() and not isinstance(found, list):
        return [f"$: {line}" for line in report.generate_report().splitlines()]
    problems = []
    for kind, name, details in found or []:
        path = _path(name)
        if kind == "missing required field":
            problems.append(f"{path}.{details['required_name']}: required; add it")
        elif kind == "unknown field":
            close = difflib.get_close_matches(details["unknown_param"], details["valid_names"], n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove it"
            problems.append(f"{path}.{details['unknown_param']}: not a RegisterTaskDefinition field; {hint}")
        elif kind == "invalid type":
            wanted = _type_wanted(details["valid_types"])
            problems.append(
                f"{path}: {_json_type(details['param'])} where {wanted} is required; write {wanted}"
            )
        elif kind in ("invalid length", "invalid range"):
            what = "length" if kind == "invalid length" else "value"
            problems.append(f"{path}: {what} below the minimum {details['min_allowed']}; raise it")
        else:
            problems.append(f"{path}: {kind}")
    return problems


_PYTHON_TYPES = {
    "<class 'str'>": "a string",
    "<class 'int'>": "an integer",
    "<class 'bool'>": "a boolean",
    "<class 'float'>": "a number",
    "<class 'decimal.Decimal'>": "a number",
    "<class 'list'>": "an array",
    "<class 'tuple'>": "an array",
    "<class 'dict'>": "an object",
}


def _type_wanted(valid_types: list[str]) -> str:
    names = dict.fromkeys(_PYTHON_TYPES.get(t, t) for t in valid_types)
    return " or ".join(names)


def _model_problems(value: Any, shape: Any, path: str = "$") -> Iterator[str]:
    """What ParamValidator lets through: enum values, and true/false where an integer belongs."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                yield from _model_problems(item, shape.members[key], f"{path}.{key}")
    elif kind == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _model_problems(item, shape.member, f"{path}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            yield from _model_problems(item, shape.value, f"{path}.{key}")
    elif kind in ("integer", "long") and isinstance(value, bool):
        yield f"{path}: a boolean where an integer is required; write a number"
    elif kind == "string" and isinstance(value, str) and shape.enum and value not in shape.enum:
        yield f"{path}: {value[:40]!r} is not valid here; use one of {', '.join(shape.enum)}"


# -- layer 3: what ECS checks on top -----------------------------------------------------------


def _units(text: Any, pattern: re.Pattern[str], per_unit: int) -> int | None:
    match = pattern.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) else round(float(match.group(2)) * per_unit)


def _containers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    containers = spec.get("containerDefinitions")
    if not isinstance(containers, list):
        return []
    return [(f"$.containerDefinitions[{i}]", c) for i, c in enumerate(containers) if isinstance(c, dict)]


def _ints(values: Sequence[Any]) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _int(value: Any) -> int | None:
    """``value`` if it is an integer (not a boolean); type errors are botocore's to report."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_task_size(spec: dict[str, Any]) -> Iterator[str]:
    """Task cpu and memory: units ECS understands, within range, a Fargate size if on Fargate."""
    fargate = "FARGATE" in (spec.get("requiresCompatibilities") or [])
    cpu = _units(spec.get("cpu"), _CPU_RE, 1024)
    memory = _units(spec.get("memory"), _MEMORY_RE, 1024)
    if "cpu" in spec and cpu is None:
        yield f"$.cpu: {spec['cpu']!r} is not CPU units; write units as a string ('2048') or vCPUs ('2 vCPU')"
    elif cpu is not None and not fargate and not EC2_TASK_CPU_RANGE[0] <= cpu <= EC2_TASK_CPU_RANGE[1]:
        low, high = EC2_TASK_CPU_RANGE
        yield f"$.cpu: {cpu} units is outside {low}..{high}; set a task cpu in that range"
    if "memory" in spec and (memory is None or memory < CONTAINER_MIN_MEMORY_MIB):
        yield f"$.memory: {spec['memory']!r} is not memory in MiB; write MiB as a string ('40960') or '40 GB'"
    if fargate:
        if cpu is None or memory is None:
            yield "$.cpu/$.memory: a Fargate task needs both; set one of Fargate's task sizes"
        elif memory not in FARGATE_SIZES.get(cpu, range(0)):
            sizes = ", ".join(str(c) for c in FARGATE_SIZES)
            yield (
                f"$.memory: {memory} MiB with {cpu} cpu units is not a Fargate size; "
                f"cpu must be one of {sizes} with its memory range"
            )
    containers = _containers(spec)
    if "memory" not in spec and not fargate:
        for path, container in containers:
            if not _ints([container.get("memory"), container.get("memoryReservation")]):
                yield f"{path}.memory: no task memory and no container memory; set the task's 'memory'"
    for field, total, unit in (("cpu", cpu, "cpu units"), ("memory", memory, "MiB")):
        summed = sum(_ints([c.get(field) for _, c in containers]))
        if total is not None and summed > total:
            yield (
                f"$.containerDefinitions[*].{field}: {summed} {unit} in all, above the task's {total}; "
                "lower them"
            )


def check_containers(spec: dict[str, Any]) -> Iterator[str]:
    """Names, images, essential containers, GPU counts, container memory, port mappings."""
    containers = _containers(spec)
    if isinstance(spec.get("containerDefinitions"), list) and not spec["containerDefinitions"]:
        yield "$.containerDefinitions: empty; a task needs at least one container"
    seen: set[str] = set()
    for path, container in containers:
        for required in ("name", "image"):
            if required not in container:
                yield f"{path}.{required}: required; add the container's {required}"
        name = container.get("name")
        if isinstance(name, str):
            if not _NAME_RE.match(name):
                yield f"{path}.name: {name!r}; use up to 255 letters, digits, '-' and '_'"
            elif name in seen:
                yield f"{path}.name: {name!r} is used twice; give each container its own name"
            seen.add(name)
        image = container.get("image")
        if isinstance(image, str) and not _IMAGE_RE.match(image):
            yield (
                f"{path}.image: {image[:80]!r} is not an image reference; "
                "write registry/repository:tag, e.g. nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.7.0"
            )
        yield from _check_container_memory(path, container)
        yield from _check_stop_timeout(path, container)
        yield from _check_gpus(path, container, spec)
        yield from _check_ports(path, container, spec.get("networkMode"))
    if containers and not any(c.get("essential", True) is not False for _, c in containers):
        yield "$.containerDefinitions[*].essential: no essential container; set 'essential': true on one"


# ECS's largest container stopTimeout: the time between SIGTERM and SIGKILL on a scale-in.
MAX_STOP_TIMEOUT_S = 120


def _check_stop_timeout(path: str, container: dict[str, Any]) -> Iterator[str]:
    value = container.get("stopTimeout")
    if isinstance(value, int) and not isinstance(value, bool) and not 0 < value <= MAX_STOP_TIMEOUT_S:
        yield (
            f"{path}.stopTimeout: {value} s; ECS takes 1..{MAX_STOP_TIMEOUT_S} s "
            "(the time in-flight requests get after SIGTERM): set one in that range"
        )


def _check_container_memory(path: str, container: dict[str, Any]) -> Iterator[str]:
    hard, soft = _int(container.get("memory")), _int(container.get("memoryReservation"))
    for field, value in (("memory", hard), ("memoryReservation", soft)):
        if value is not None and value < CONTAINER_MIN_MEMORY_MIB:
            yield f"{path}.{field}: {value} MiB; a container needs at least {CONTAINER_MIN_MEMORY_MIB}"
    if hard is not None and soft is not None and soft > hard:
        yield f"{path}.memoryReservation: {soft} MiB above 'memory' {hard}; lower it or raise 'memory'"


def _check_gpus(path: str, container: dict[str, Any], spec: dict[str, Any]) -> Iterator[str]:
    requirements = container.get("resourceRequirements")
    if not isinstance(requirements, list):
        return
    gpus = [(i, r) for i, r in enumerate(requirements) if isinstance(r, dict) and r.get("type") == "GPU"]
    for index, requirement in gpus:
        value = requirement.get("value")
        if not (isinstance(value, str) and _POSITIVE_INT_RE.match(value)):
            yield (
                f"{path}.resourceRequirements[{index}].value: {value!r} is not a GPU count; "
                "write a positive whole number as a string, e.g. '1'"
            )
    if len(gpus) > 1:
        yield f"{path}.resourceRequirements: GPU listed {len(gpus)} times; list it once"
    if gpus and "FARGATE" in (spec.get("requiresCompatibilities") or []):
        yield f"{path}.resourceRequirements: Fargate has no GPUs; run GPU tasks on EC2"


def _check_ports(path: str, container: dict[str, Any], network_mode: Any) -> Iterator[str]:
    mappings = container.get("portMappings")
    if not isinstance(mappings, list):
        return
    for index, mapping in enumerate(mappings):
        if not isinstance(mapping, dict):
            continue
        where = f"{path}.portMappings[{index}]"
        port, host = _int(mapping.get("containerPort")), _int(mapping.get("hostPort"))
        if port is not None and not 1 <= port <= 65535:
            yield f"{where}.containerPort: {port}; a port is 1..65535"
        if host is not None and not 0 <= host <= 65535:
            yield f"{where}.hostPort: {host}; a port is 0..65535 (0: any)"
        if network_mode in ("host", "awsvpc") and port is not None and host is not None and host != port:
            yield (
                f"{where}.hostPort: {host} differs from containerPort {port} in {network_mode} mode; "
                "make them equal"
            )


def check_endpoint_variables(spec: dict[str, Any]) -> Iterator[str]:
    """The operator points Dynamo at etcd through ``ETCD_ENDPOINTS``: a spec without it never connects."""
    for _, container in _containers(spec):
        environment = container.get("environment")
        if isinstance(environment, list) and any(
            isinstance(v, dict) and v.get("name") == "ETCD_ENDPOINTS" for v in environment
        ):
            return
    yield (
        "$.containerDefinitions[0].environment: no ETCD_ENDPOINTS; add "
        '{"name": "ETCD_ENDPOINTS", "value": "http://IP_ADDRESS:2379"} (the operator fills the address)'
    )


def check_tags(spec: dict[str, Any]) -> Iterator[str]:
    tags = spec.get("tags")
    if isinstance(tags, list) and len(tags) >= MAX_TAGS:
        yield f"$.tags: {len(tags)} tags; at most {MAX_TAGS - 1} (the operator adds one)"


def check_plain_credentials(spec: dict[str, Any]) -> Iterator[str]:
    from dynamo_ecs.planes.gpu_credentials import plain_credential_problems

    yield from plain_credential_problems(spec)


ECS_RULES: tuple[SpecCheck, ...] = (
    check_task_size,
    check_containers,
    check_endpoint_variables,
    check_tags,
    check_plain_credentials,
)
DEFAULT_CHECKS: tuple[SpecCheck, ...] = (
    *ECS_RULES,
    check_dynamo_release,
    check_cross_host_networking,
    check_host_volumes,
)


# -- the whole check -------------------------------------------------------------------------


def spec_problems(spec: Any, checks: Sequence[SpecCheck] = DEFAULT_CHECKS) -> list[str]:
    """Every problem of ``spec``, as ``$.json.path: what is wrong; the fix``. Empty: it is good."""
    from dynamo_ecs.endpoints.render import RenderContext, render_task_definition

    if not isinstance(spec, dict):
        return [f"$: {_json_type(spec)} where a task definition object is required"]
    size = len(json.dumps(spec, default=str))
    if size > MAX_SPEC_BYTES:
        return [f"$: {size} bytes as JSON, above RegisterTaskDefinition's {MAX_SPEC_BYTES}; shorten it"]
    context = RenderContext(SAMPLE_ENDPOINT, SAMPLE_ACCOUNT, SAMPLE_REGION)
    try:
        rendered = render_task_definition(spec, context)
    except PlaceholderError as exc:
        return [str(exc)]
    problems = _botocore_problems(rendered)
    problems += _model_problems(rendered, register_input_shape())
    for check in checks:
        problems += check(rendered)
    return list(dict.fromkeys(problems))


def validate_spec(
    spec: Any, where: str, checks: Sequence[SpecCheck] = DEFAULT_CHECKS, found: Sequence[str] = ()
) -> dict[str, Any]:
    """``spec`` if it is good; else `InvalidSpecError` listing every problem.

    ``where`` replaces the ``$`` of each path, e.g. ``spec.frontend``. ``found``: problems the
    caller found already (on what the user wrote, before the operator filled anything), listed first.
    """
    problems = list(dict.fromkeys([*found, *spec_problems(spec, checks)]))
    if problems:
        raise InvalidSpecError(
            where, [p.replace("$", where, 1) if p.startswith("$") else p for p in problems]
        )
    checked: dict[str, Any] = spec
    return checked


ModelId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_MODEL_PATH), AfterValidator(check_model_id)
]
"""A model id field: a Hugging Face repo id or an absolute local path (`check_model_id`)."""
