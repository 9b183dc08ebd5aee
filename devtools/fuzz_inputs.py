"""Hypothesis generators of malformed events and payloads, one per handler, with what each must answer.

Every strategy draws a `Case`: the input and a fragment the answer must name (the field, or
the reason the event is not ours). A case is malformed by construction (a wrong type, a value
out of range, an unknown field, an alarm the stack does not create, shell syntax in a model
id, one field of a spec broken), so a handler that accepts it has a bug. The fuzz tests and
``bench/bench_fuzz.py`` share them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from devtools.ecs_world import fill_account_placeholders, load_example_taskdef
from devtools.scaling_inputs import alarm_state_change_event, schedule_event
from devtools.services import STACK_GPU_EXECUTION_ROLE_ARN, STACK_GPU_TASK_ROLE_ARN
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.endpoints.spec_validation import register_input_shape
from dynamo_ecs.scaling.triggers import our_alarms
from dynamo_ecs.signals.breach_events import EVENT_DETAIL_TYPE, EVENT_SOURCE

REGION = "us-east-1"


@dataclass(frozen=True)
class Case:
    event: Any
    names: str  # the answer's reason must contain this

    def __repr__(self) -> str:  # hypothesis prints failing cases: keep megabyte values short
        return f"Case(names={self.names!r}, event={json.dumps(self.event, default=str)[:400]})"


# -- values of the wrong kind --------------------------------------------------------------------

NOT_A_BOOL = st.one_of(
    st.sampled_from(["yes", "no", "true", "false", "1", "0", "", "on"]),
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.lists(st.booleans(), max_size=2),
)
JUNK = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
NOT_A_STRING = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.text(), max_size=2)
)
LETTERS = st.text(alphabet="abcdefghijklmnopqrstuwxyz", min_size=1, max_size=12)  # no digits, no 'v'
SHELL = ";&|$`()<>\\\"' \n*?{}!#~"
HUGE = st.integers(min_value=300, max_value=2_000_000).map(lambda n: "a" * n)


@st.composite
def _with_metachar(draw: st.DrawFn) -> str:
    head = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyzQ0123456789/-", max_size=12))
    tail = draw(st.text(max_size=12))
    syntax: str = draw(st.sampled_from([*SHELL, "$(", "&&", "||", "`"]))
    return head + syntax + tail


def hostile_model_ids() -> st.SearchStrategy[str]:
    return st.one_of(
        _with_metachar(),
        st.sampled_from(["Qwen/Qwen3;reboot", "$(touch X)", "`id`", "a && b", "a--b", "org/a/b", "../x"]),
        HUGE,
    )


def bad_images() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=20).map(lambda t: f"nvcr.io/nvidia/{t} runtime:1"),  # a space is never valid
        st.sampled_from(["", "UPPER/Case:1", "repo:", ":tag", "a//b", "repo@sha256:xyz"]),
        NOT_A_STRING,
    )


# -- redeploy ----------------------------------------------------------------------------------


def _user_spec(role: str) -> dict[str, Any]:
    return fill_account_placeholders(load_example_taskdef(role), REGION)  # type: ignore[arg-type]


def _container_members() -> list[str]:
    return list(register_input_shape().members["containerDefinitions"].member.members)


Mutation = Callable[[dict[str, Any], st.DrawFn], str]


def _set_task(field: str, values: st.SearchStrategy[Any], names: str) -> Mutation:
    def mutate(spec: dict[str, Any], draw: st.DrawFn) -> str:
        spec[field] = draw(values)
        return names

    return mutate


def _set_container(field: str, values: st.SearchStrategy[Any], names: str) -> Mutation:
    def mutate(spec: dict[str, Any], draw: st.DrawFn) -> str:
        spec["containerDefinitions"][0][field] = draw(values)
        return names

    return mutate


def _gpu(spec: dict[str, Any], draw: st.DrawFn) -> str:
    value = draw(
        st.one_of(
            st.integers(max_value=0).map(str),
            LETTERS,
            st.sampled_from(["1.5", "two", " 1", ""]),
            st.integers(min_value=1, max_value=8),
        )
    )
    spec["containerDefinitions"][0]["resourceRequirements"] = [{"type": "GPU", "value": value}]
    return "resourceRequirements[0].value"


def _remove(field: str) -> Mutation:
    def mutate(spec: dict[str, Any], draw: st.DrawFn) -> str:
        del spec["containerDefinitions"][0][field]
        return f"containerDefinitions[0].{field}"

    return mutate


def _unknown_field(spec: dict[str, Any], draw: st.DrawFn) -> str:
    members = set(register_input_shape().members) | set(_container_members())
    name = draw(st.from_regex(r"[a-z][a-zA-Z]{2,12}", fullmatch=True).filter(lambda n: n not in members))
    target = draw(st.sampled_from(["task", "container"]))
    (spec if target == "task" else spec["containerDefinitions"][0])[name] = draw(JUNK)
    return name


def _not_essential(spec: dict[str, Any], draw: st.DrawFn) -> str:
    for container in spec["containerDefinitions"]:
        container["essential"] = False
    return "essential"


def _glued_placeholder(spec: dict[str, Any], draw: st.DrawFn) -> str:
    glue = draw(st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True))
    spec["containerDefinitions"][0]["command"] = [f"python3 -m dynamo.vllm --host IP_ADDRESS{glue}"]
    return "command[0]"


def _no_etcd(spec: dict[str, Any], draw: st.DrawFn) -> str:
    spec["containerDefinitions"][0]["environment"] = []
    return "ETCD_ENDPOINTS"


def _foreign_family(spec: dict[str, Any], draw: st.DrawFn) -> str:
    spec["family"] = draw(st.one_of(LETTERS, NOT_A_STRING))  # never the stack's ("Dynamo-...")
    return "family"


def _containers_junk(spec: dict[str, Any], draw: st.DrawFn) -> str:
    spec["containerDefinitions"] = draw(
        st.one_of(st.just([]), st.lists(NOT_A_STRING, min_size=1, max_size=2), st.text(max_size=5), st.none())
    )
    return "containerDefinitions"


SPEC_MUTATIONS: list[Mutation] = [
    _set_task("cpu", st.one_of(LETTERS, st.integers(max_value=127).map(str), NOT_A_STRING), "cpu"),
    _set_task("memory", st.one_of(LETTERS, st.integers(max_value=5).map(str), NOT_A_STRING), "memory"),
    _set_task("networkMode", LETTERS.filter(lambda m: m not in ("host", "bridge", "none")), "networkMode"),
    _gpu,
    _set_container("image", bad_images(), "containerDefinitions[0].image"),
    _set_container(
        "cpu", st.one_of(st.text(max_size=5), st.booleans(), st.none()), "containerDefinitions[0].cpu"
    ),
    _set_container(
        "memory", st.one_of(st.integers(max_value=5), st.booleans()), "containerDefinitions[0].memory"
    ),
    _set_container("essential", st.one_of(st.text(max_size=5), st.integers()), "essential"),
    _set_container("portMappings", st.just([{"containerPort": "8000"}]), "containerPort"),
    _remove("image"),
    _remove("name"),
    _unknown_field,
    _not_essential,
    _glued_placeholder,
    _no_etcd,
    _containers_junk,
    _foreign_family,
]


@st.composite
def broken_spec_payloads(draw: st.DrawFn) -> Case:
    role = draw(st.sampled_from(["frontend", "prefill"]))
    spec = copy.deepcopy(_user_spec(role))
    if draw(st.integers(0, 9)) == 0:  # a good spec for the service the payload does not select
        other = "prefill" if role == "frontend" else "frontend"
        payload: dict[str, Any] = {"services": [other], "spec": {role: spec}}
        return Case(payload | ({"dry_run": True} if draw(st.booleans()) else {}), f"spec.{role}")
    names = draw(st.sampled_from(SPEC_MUTATIONS))(spec, draw)
    payload = {"spec": {role: spec}}
    if draw(st.booleans()):
        payload["dry_run"] = True  # a dry run is checked the same way
    return Case(payload, names)


@st.composite
def bad_redeploy_payloads(draw: st.DrawFn) -> Case:
    """One bad field in an otherwise good payload (or a payload that is not an object at all)."""
    good: dict[str, Any] = draw(
        st.fixed_dictionaries({}, optional={"services": st.just(["frontend"]), "force": st.booleans()})
    )
    field, value = draw(
        st.one_of(
            st.tuples(st.just("force"), NOT_A_BOOL),
            st.tuples(st.just("dry_run"), NOT_A_BOOL),
            st.tuples(st.just("image"), bad_images()),
            st.tuples(st.just("model"), st.one_of(hostile_model_ids(), NOT_A_STRING)),
            st.tuples(
                st.just("services"),
                st.one_of(
                    st.just([]),
                    st.lists(LETTERS.filter(lambda r: r not in ("frontend", "prefill")), min_size=1),
                ),
            ),
            st.tuples(
                st.just("command"),
                st.one_of(
                    st.just([]), st.just([""]), st.lists(NOT_A_STRING, min_size=1, max_size=2), LETTERS
                ),
            ),
            st.tuples(
                st.just("spec"), st.one_of(st.lists(JUNK, max_size=2), st.text(max_size=5), st.integers())
            ),
            st.tuples(
                st.from_regex(r"[a-z_]{2,12}", fullmatch=True).filter(
                    lambda n: n not in ("services", "image", "model", "command", "force", "dry_run", "spec")
                ),
                JUNK,
            ),
        )
    )
    if value is None and field in ("image", "model", "command", "services", "spec"):
        value = 0  # null is "not given" for these optional fields; 0 is wrong for each
    if draw(st.integers(0, 19)) == 0:
        return Case(
            draw(st.one_of(st.integers(), st.text(max_size=10), st.lists(JUNK, max_size=2))), "payload"
        )
    return Case(good | {field: value}, field)


def redeploy_cases() -> st.SearchStrategy[Case]:
    return st.one_of(bad_redeploy_payloads(), broken_spec_payloads())


# -- scaler ------------------------------------------------------------------------------------


def not_our_alarm_names(config: DeploymentConfig) -> st.SearchStrategy[str]:
    ours = set(our_alarms(config))
    return st.one_of(
        st.text(min_size=1, max_size=40),
        st.builds(
            lambda role, signal: f"{config.deployment}-scale-{role}-{signal}",
            st.sampled_from(["frontend", "prefill", "decode"]),
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8),
        ),
        HUGE.map(lambda a: f"{config.deployment}-scale-frontend-ttft{a}"),
    ).filter(lambda name: name not in ours)


@st.composite
def scaler_cases(draw: st.DrawFn, config: DeploymentConfig) -> Case:
    kind = draw(
        st.sampled_from(["alarm_name", "alarm_state", "alarm_detail", "breach", "schedule", "manual", "junk"])
    )
    if kind == "alarm_name":
        return Case(alarm_state_change_event(draw(not_our_alarm_names(config)), "ALARM", 0.0), "alarm")
    if kind == "alarm_state":
        event = alarm_state_change_event(next(iter(our_alarms(config))), "ALARM", 0.0)
        event["detail"]["state"]["value"] = draw(st.one_of(LETTERS, NOT_A_STRING))
        return Case(event, "state")
    if kind == "alarm_detail":
        event = alarm_state_change_event(next(iter(our_alarms(config))), "ALARM", 0.0)
        event["detail"] = draw(st.one_of(st.lists(JUNK, max_size=2), st.text(max_size=5), st.integers()))
        return Case(event, "detail")
    if kind == "breach":
        breaches = draw(
            st.one_of(
                st.none(),
                st.integers(),
                st.text(max_size=12),
                st.just([]),
                st.lists(JUNK, min_size=1, max_size=3),
                st.lists(st.fixed_dictionaries({"role": LETTERS, "signal": LETTERS}), min_size=1, max_size=2),
            )
        )
        detail = {"deployment": config.deployment, "at": 0.0, "breaches": breaches}
        event = {"id": "b-1", "source": EVENT_SOURCE, "detail-type": EVENT_DETAIL_TYPE, "detail": detail}
        return Case(event, "breaches")
    if kind == "schedule":
        event = schedule_event(0.0)
        field = draw(st.sampled_from(["id", "source", "detail-type"]))
        event[field] = draw(st.one_of(NOT_A_STRING, HUGE))
        return Case(event, field)
    if kind == "manual":
        return Case({"dry_run": draw(NOT_A_BOOL)}, "dry_run")
    return Case(
        draw(st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(JUNK, max_size=2))), ""
    )


# -- metrics collector -------------------------------------------------------------------------


@st.composite
def collector_cases(draw: st.DrawFn) -> Case:
    event = schedule_event(0.0)
    field = draw(st.sampled_from(["time", "time", "id", "source", "detail-type", "whole"]))
    if field == "whole":
        return Case(
            draw(st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(JUNK, max_size=2))), ""
        )
    if field == "time":
        event["time"] = draw(
            st.one_of(
                st.floats(allow_nan=False),
                st.integers(),
                st.none(),
                LETTERS,
                st.sampled_from(["2026-11-29", "29/11/2026 00:00", "2026-11-29T00:00:00", "0.5"]),
            )
        )
    else:
        event[field] = draw(
            st.one_of(NOT_A_STRING, HUGE) if field == "id" else st.one_of(NOT_A_STRING, HUGE, LETTERS)
        )
    return Case(event, field)


# -- infra watcher -----------------------------------------------------------------------------


def _task_event() -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e-1",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "123456789012",
        "time": "2026-11-29T00:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": {
            "clusterArn": f"arn:aws:ecs:{REGION}:123456789012:cluster/dynamo-fargate",
            "taskArn": f"arn:aws:ecs:{REGION}:123456789012:task/dynamo-fargate/abc",
            "group": "service:dynamo-infra",
            "lastStatus": "RUNNING",
            "version": 2,
        },
    }


@st.composite
def infra_event_cases(draw: st.DrawFn) -> Case:
    event = _task_event()
    field = draw(
        st.sampled_from(
            ["version", "lastStatus", "taskArn", "clusterArn", "group", "source", "id", "detail", "whole"]
        )
    )
    detail = event["detail"]
    names = f"detail.{field}"
    if field == "whole":
        return Case(
            draw(st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(JUNK, max_size=2))), ""
        )
    if field == "version":
        detail["version"] = draw(
            st.one_of(st.integers(max_value=-1), st.text(max_size=4), st.booleans(), st.floats())
        )
    elif field == "lastStatus":
        detail["lastStatus"] = draw(st.one_of(LETTERS, NOT_A_STRING, HUGE))
    elif field in ("taskArn", "clusterArn"):
        too_long = st.integers(min_value=2100, max_value=200_000).map(lambda n: "arn:aws:ecs:" + "a" * n)
        detail[field] = draw(st.one_of(LETTERS, NOT_A_STRING, too_long))
    elif field == "group":
        detail["group"] = draw(
            st.one_of(st.text(max_size=30).filter(lambda g: g != "service:dynamo-infra"), NOT_A_STRING)
        )
        names = "not the infra service" if isinstance(detail["group"], str) else names
    elif field == "source":
        event["source"] = draw(st.one_of(LETTERS, NOT_A_STRING))
        names = "not ours" if isinstance(event["source"], str) else "source"
    elif field == "id":
        event["id"] = draw(st.one_of(NOT_A_STRING, HUGE))
        names = "id"
    else:
        event["detail"] = draw(st.one_of(st.lists(JUNK, max_size=2), st.text(max_size=5), st.none()))
        names = "detail"
    return Case(event, names)


# -- bootstrap ---------------------------------------------------------------------------------

GOOD_PROPERTIES = {
    "Image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
    "Model": "Qwen/Qwen3-0.6B",
    "ExecutionRoleArn": STACK_GPU_EXECUTION_ROLE_ARN,
    "TaskRoleArn": STACK_GPU_TASK_ROLE_ARN,
    "FrontendLogGroup": "/dynamo/frontend",
    "PrefillLogGroup": "/dynamo/prefill",
    "FrontendInitialCount": "1",
    "PrefillInitialCount": "1",
}


@st.composite
def bootstrap_cases(draw: st.DrawFn, response_url: str) -> Case:
    request: dict[str, Any] = {
        "RequestType": draw(st.sampled_from(["Create", "Update"])),
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/dynamo/1",
        "RequestId": "req-1",
        "LogicalResourceId": "GpuServices",
        "ResourceType": "Custom::DynamoGpuServices",
        "PhysicalResourceId": "dynamo-gpu-services",
    }
    props: dict[str, Any] = dict(GOOD_PROPERTIES)
    field = draw(
        st.sampled_from(
            [
                "Image",
                "Model",
                "FrontendInitialCount",
                "PrefillInitialCount",
                "ExecutionRoleArn",
                "RequestType",
                "ResourceProperties",
            ]
        )
    )
    if field == "Image":
        props["Image"] = draw(bad_images().filter(lambda v: v not in ("", None)))
    elif field == "Model":
        props["Model"] = draw(st.one_of(hostile_model_ids(), st.integers(), st.booleans()))
    elif field in ("FrontendInitialCount", "PrefillInitialCount"):
        props[field] = draw(
            st.one_of(
                st.sampled_from(["two", "-1", "1.5", " 1", "1e3", "99999"]),
                st.booleans(),
                st.floats(allow_nan=False),
            )
        )
    elif field == "ExecutionRoleArn":
        props[field] = draw(st.one_of(LETTERS, st.integers(), HUGE))
    elif field == "RequestType":
        request["RequestType"] = draw(st.one_of(LETTERS, NOT_A_STRING))
    else:
        request["ResourceProperties"] = draw(
            st.one_of(st.lists(JUNK, max_size=2), st.text(max_size=5), st.integers())
        )
        return Case(request, "ResourceProperties")
    request.setdefault("ResourceProperties", props)
    return Case(request, field)


@st.composite
def plane_credentials_cases(draw: st.DrawFn, response_url: str) -> Case:
    """``Custom::DynamoPlaneCredentials`` requests with one property broken."""
    request: dict[str, Any] = {
        "RequestType": draw(st.sampled_from(["Create", "Update"])),
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/dynamo/1",
        "RequestId": "req-1",
        "LogicalResourceId": "PlaneCredentials",
        "ResourceType": "Custom::DynamoPlaneCredentials",
        "PhysicalResourceId": "dynamo-plane-credentials",
    }
    props: dict[str, Any] = {"Deployment": "dynamo", "ServerNames": ["infra-0.dynamo-infra.internal"]}
    field = draw(st.sampled_from(["Deployment", "ServerNames", "DryRun", "Rotate"]))
    if field == "Deployment":
        props[field] = draw(
            st.one_of(
                NOT_A_STRING,
                HUGE,
                st.sampled_from(["", "a b", "x;rm", "../etc", "dynamo/planes", "ümlaut"]),
            )
        )
    elif field == "ServerNames":
        bad_name = st.one_of(
            st.sampled_from(["-x", "a..b", "a b", "*.internal", "x" * 64, "é.internal", ""]),
            st.integers(),
            st.none(),
        )
        props[field] = draw(
            st.one_of(
                st.lists(bad_name, min_size=1, max_size=3),
                st.integers(),
                st.none(),
                st.dictionaries(LETTERS, LETTERS, max_size=2),
                st.lists(st.just("a.b"), min_size=21, max_size=25),
            )
        )
    elif field == "Rotate":
        props[field] = draw(
            st.one_of(
                st.sampled_from(["rotate", "TRUST", "trust ", "issue,retire", "1"]),
                st.integers(),
                st.lists(st.just("trust"), min_size=1, max_size=2),
            )
        )
    else:
        props[field] = draw(
            st.one_of(LETTERS, st.integers(min_value=2), st.sampled_from(["yes", "1", "TRUE "]))
        )
    request["ResourceProperties"] = props
    return Case(request, field)
