"""Only the member certificate can be an etcd peer (``ETCD_PEER_CERT_ALLOWED_CN``), on the real etcd 3.5.

Even once root has added a member, a process presenting another certificate of the stack's CA
(here one that could serve, but with Dynamo's CN) never joins; one with the members' CN does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.planes import peer_started, planes_on_loopback, start_peer
from dynamo_ecs.planes.infra_settings import MEMBER_CN


@pytest.mark.parametrize(("common_name", "joins"), [("dynamo", False), (MEMBER_CN, True)])
def test_only_the_members_certificate_is_a_peer(tmp_path: Path, common_name: str, joins: bool) -> None:
    with planes_on_loopback(tmp_path / "first") as planes:
        process = start_peer(planes, tmp_path / "second", common_name)
        try:
            log = tmp_path / "second" / "second.log"
            assert peer_started(planes, within_s=15) is joins, log.read_text()[-800:]
        finally:
            process.stop()
