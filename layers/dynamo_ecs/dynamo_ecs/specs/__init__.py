"""Task definitions in the format of Dynamo's ECS example, as ``register-task-definition`` takes them.

``frontend.json`` and ``prefill.json`` are the default specs of the two GPU services, with
the example's placeholders (``IP_ADDRESS``, ``AWS_ID``, ``AWS_REGION``) left in;
``infra.json`` is the etcd + NATS task. Users who followed the example bring their own
files unchanged through the redeploy function's ``spec`` field.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Literal


def load_default_spec(name: Literal["frontend", "prefill", "infra"]) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(f"{name}.json").read_text()
    spec: dict[str, Any] = json.loads(text)
    return spec
