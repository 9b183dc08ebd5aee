"""``dynamo-ecs profile`` against the real Dynamo 1.6.1 frontend and its mocker engine.

One frontend task and one prefill task run from the default task definitions (moto for ECS,
the infra task's real etcd and nats-server, `devtools.local_ecs`); the profile's load goes
to the frontend, and the profile file is written to ``out/profile/mocker.json`` for
``dynamo-ecs replay --profile``. The figures are requests/s per replica at the default
targets (TTFT 500 ms, ITL 50 ms, means). They measure Dynamo's mocker (its simulated
prefill at speed 1, decode ten times faster) on this machine's shared cores, not a GPU: the
frontend's own CPU is part of what is measured (docs/replay.md "Per-replica capacity").
The real-process run stays under three minutes.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from devtools import netguard
from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL, local_deployment
from devtools.services import aws_test_environment, moto_server
from dynamo_ecs import aws
from dynamo_ecs_cli.profile import run_profile, write_profile

RATES = (2.0, 8.0, 24.0, 48.0, 72.0, 96.0)
STEP_S = 12.0
INPUT_TOKENS, OUTPUT_TOKENS = 1000, 10
# The mocker simulates its engine's timing (--speedup-ratio scales it). At speed 1 its decode
# worker streamed about 280 ms a chunk here, above any ITL target, so decode runs ten times
# faster; prefill runs at speed 1, so its queue, not this machine's CPU, sets the TTFT.
ENGINE = {"frontend": ("--speedup-ratio", "10"), "prefill": ("--speedup-ratio", "0.1")}
OUT = Path("out/profile/mocker.json")


def run() -> None:
    netguard.install()
    netguard.mirror_private_to_loopback()
    saved = dict(os.environ)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp, moto_server(Path(tmp)) as moto:
            os.environ.update(aws_test_environment(moto.url))
            aws.reset_clients()
            with local_deployment(
                Path(tmp) / "deployment", gpu_instances=2, desired=1, engine_args=ENGINE
            ) as deployment:
                url = deployment.frontend_url()
                if not first_success(url, MODEL, 90, on_wait=deployment.runner.tick):
                    raise RuntimeError("the local deployment never served")
                profile = run_profile(
                    url,
                    MODEL,
                    RATES,
                    STEP_S,
                    INPUT_TOKENS,
                    OUTPUT_TOKENS,
                    500.0,
                    50.0,
                    "bench_profile: Dynamo 1.6.1 frontend + mocker (decode x10, prefill x1), local",
                    on_point=lambda p: print(f"# {p.model_dump()}", flush=True),
                )
        write_profile(profile, OUT)
        print(f"# wrote {OUT}")
        print(f"figure: profile_prefill_rps_per_replica_mocker {profile.prefill_capacity_rps:.2f} rps")
        bound = " (at least)" if profile.frontend_is_lower_bound else ""
        print(f"figure: profile_frontend_rps_per_replica_mocker {profile.frontend_capacity_rps:.2f} rps")
        print(f"# frontend figure{bound}: ITL target {'not ' if bound else ''}reached within the rates tried")
        print(f"figure: profile_run_s {time.monotonic() - started:.1f} s")
    finally:
        netguard.mirror_private_to_loopback(False)
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()
