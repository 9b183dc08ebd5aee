"""The planes' rotation, the whole documented procedure, under load with the real Dynamo 1.6.1.

The three-member tier of template.yaml with the planes on (real etcd and NATS clusters from the
members' task definitions; the stack's CA and certificates in moto's Secrets Manager, made by the
credential maker's own code) and both GPU services running the real Dynamo: ``trust``, ``issue``,
``retire``, each followed by the members rolled one at a time and both GPU services rolled as
ECS rolls a new deployment (new tasks healthy before the old ones stop), while 3 requests/s run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL
from devtools.local_ecs.rotation_under_load import rolling_update_settings, rotate_under_load
from devtools.local_ecs.tier_deployment import tier_deployment
from devtools.services import MotoServer
from dynamo_ecs.planes.rotation import STEPS

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time


def test_a_rotation_under_load_fails_no_request_and_leaves_only_the_new_ca(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    with tier_deployment(
        tmp_path, desired={"frontend": 1, "prefill": 1}, **rolling_update_settings()
    ) as deployment:
        assert first_success(deployment.frontend_url(), MODEL, 90, on_wait=deployment.runner.tick)
        # When every step runs, each followed by the members' and the GPU services' rolls, under load
        result = rotate_under_load(deployment, tmp_path / "rotation")
        # Then no request failed and no Dynamo process exited outside a roll
        assert result.requests >= 100, result
        assert result.failed == 0, result.failures
        assert result.unplanned_exits == [], result
        # and every step rolled every member and both services (one new task each per step),
        # the frontend service keeping a healthy task behind the load balancer throughout
        assert [s.step for s in result.steps] == list(STEPS)
        assert all(len(s.members_s) == 3 for s in result.steps), result.steps
        assert result.gpu_tasks_started == 2 * len(STEPS), result
        assert result.min_healthy_frontends >= 1, result
        # and the rotation happened: every member serves a certificate of the new CA (verified with
        # it alone), every Dynamo process holds one and trusts the new CA alone, and the running
        # etcd refuses the certificate Dynamo held before (the current one is accepted)
        evidence = result.evidence
        assert evidence is not None
        assert evidence.member_issuers_new == [True, True, True], evidence
        assert evidence.dynamo_clients_new and all(evidence.dynamo_clients_new), evidence
        assert evidence.old_client_of_old_ca, evidence
        assert evidence.old_client_refused, evidence
        assert evidence.new_client_accepted, evidence
