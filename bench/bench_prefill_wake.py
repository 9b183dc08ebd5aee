"""Prefill woken from zero by the operator's own path, on the real Dynamo and the handlers on moto.

The stack on moto with ``PrefillMin`` 0: the bootstrap's custom resource creates the frontend
service at one task and the prefill service at none. A client then asks for a chat completion
every half second; each is refused (503: the model has no prefill side). The path that must
wake prefill is the operator's: the metrics collector on its schedule (the demo's 10-s rounds,
`devtools/demo/stack.py` DEMO_CONFIG) counts the refusals on the frontend's real ``/metrics``,
its breach event goes through the stack's rule to the scaler, the scaler raises the prefill
service's desired count, and the runner starts the task (the mocker's model load: 3 s).

Figure: from the first request to the first completion served. The collector's schedule starts
half a round before the first request (production's phase is arbitrary: 0 to 10 s). Not in it:
EC2's and ECS's own delays (instance launch, image pull; docs/replay.md has those).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from devtools.demo.scenario import CollectorSchedule, Scenario
from devtools.demo.stack import LocalStack
from devtools.local_ecs.client import chat
from devtools.local_ecs.deployment import MODEL
from devtools.local_ecs.health import TargetGroupCheck

WAKE_BOUND_S = 120.0
ROUND_S = 10.0  # the demo config's sampling interval (60 s / 6 rounds)


def _create_services(stack: LocalStack) -> None:
    stack.invoke(
        "bootstrap",
        {
            "RequestType": "Create",
            "ResponseURL": stack.cloudformation.url,
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/dynamo/bench",
            "RequestId": "bench-create",
            "ResourceType": "Custom::DynamoGpuServices",
            "LogicalResourceId": "GpuServices",
            "ResourceProperties": stack.bootstrap_properties(),
        },
    )
    if stack.cloudformation.answers[-1]["Status"] != "SUCCESS":
        raise RuntimeError(f"bootstrap answered {stack.cloudformation.answers[-1]}")


def _wait_for_frontend_without_prefill(stack: LocalStack, check: TargetGroupCheck) -> str:
    """The frontend task's address once its decode worker registered (the check answers 503)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        stack.runner.tick()
        frontends = stack.runner.running("frontend")
        if frontends and check.probe(frontends[0].address) == 503:
            if stack.runner.running("prefill"):
                raise RuntimeError("a prefill task runs: the bench needs the prefill service at zero")
            return frontends[0].address
        time.sleep(0.5)
    raise RuntimeError(f"no frontend with a registered decode worker within 90 s: {stack.runner.stopped}")


def measure_wake(workdir: Path) -> tuple[float | None, int]:
    """Seconds from the first request to the first completion (None: not within the bound)."""
    check = TargetGroupCheck.from_template()
    with LocalStack.start(workdir, {"PrefillMin": "0"}) as stack:
        _create_services(stack)
        address = _wait_for_frontend_without_prefill(stack, check)
        url = f"http://{address}:{check.port}"
        scenario = Scenario(stack)
        collector = CollectorSchedule(stack).start()
        refused = 0
        try:
            time.sleep(ROUND_S / 2)
            began = time.monotonic()
            while time.monotonic() - began < WAKE_BOUND_S:
                result = chat(url, MODEL, timeout_s=10)
                if result.ok:
                    served_s = time.monotonic() - began
                    if not stack.runner.running("prefill"):
                        raise RuntimeError("a completion was served with no prefill task running")
                    return served_s, refused
                refused += 1
                scenario.tick()
                time.sleep(0.5)
            return None, refused
        finally:
            collector.stop()


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-prefill-wake-") as tmp:
        wake_s, refused = measure_wake(Path(tmp))
    print(f"# {refused} requests refused (503) before prefill served")
    print(f"# prefill_wake_from_zero_s: -1 means no completion within {WAKE_BOUND_S:.0f} s")
    print(f"figure: prefill_wake_from_zero_s {-1.0 if wake_s is None else wake_s:.1f} s")
