"""etcd's TLS settings as config-file lines (members started with ``--config-file``), on the real etcd 3.5."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.planes import WRONG_ETCD, Planes, etcd_attempt, etcd_state, etcdctl, planes_on_loopback


@pytest.fixture(scope="module")
def planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planes]:
    with planes_on_loopback(tmp_path_factory.mktemp("planes-config-file"), etcd_config_file=True) as running:
        yield running


def test_the_config_files_tls_settings_hold(planes: Planes, tmp_path: Path) -> None:
    assert (planes.infra.directory.parent / "etcd.conf.yml").read_text().count("client-cert-auth: true") == 2
    assert etcdctl(planes, "put", "v1/x", "1", holder="dynamo").returncode == 0
    before = etcd_state(planes)
    for kind in ("no client certificate", "plain HTTP", "another CA's certificate with Dynamo's CN"):
        assert not etcd_attempt(planes, WRONG_ETCD[kind]), kind
    assert etcd_state(planes) == before
