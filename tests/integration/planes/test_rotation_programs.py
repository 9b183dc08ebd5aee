"""The rotation's overlap on the real etcd 3.5 and nats-server 2.11: between the steps every
holder's old and new credentials are accepted, so rolling restarts lose nothing; after
``retire`` the old ones are refused."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import nats

from devtools.planes import secured_infra
from devtools.services import find_binary
from dynamo_ecs import aws
from dynamo_ecs.planes.rotation import rotate
from dynamo_ecs.planes.secrets_store import ensure_plane_secrets, secret_name


def secret(holder: str) -> dict[str, str]:
    answer = aws.client("secretsmanager").get_secret_value(SecretId=secret_name("dynamo", holder))
    return dict(json.loads(answer["SecretString"]))


def files(directory: Path, payload: dict[str, str]) -> dict[str, str]:
    """A GPU task's credentials as started now: PEM files, and its NATS user and password."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key in ("ca_bundle", "client_cert", "client_key"):
        (directory / f"{key}.pem").write_text(payload[key])
        paths[key] = str(directory / f"{key}.pem")
    return paths | {"nats_user": payload["nats_user"], "nats_password": payload["nats_password"]}


def etcd_put(url: str, client: dict[str, str]) -> bool:
    done = subprocess.run(
        [
            find_binary("etcdctl"),
            f"--endpoints={url}",
            "--dial-timeout=2s",
            "--command-timeout=3s",
            f"--cacert={client['ca_bundle']}",
            f"--cert={client['client_cert']}",
            f"--key={client['client_key']}",
            "put",
            "v1/rotation/check",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return done.returncode == 0


def nats_ok(url: str, client: dict[str, str]) -> bool:
    async def attempt() -> bool:
        async def quiet(_: Exception) -> None:
            return None

        try:
            connection: Any = await nats.connect(
                servers=[url],
                tls=ssl.create_default_context(cafile=client["ca_bundle"]),
                user=client["nats_user"],
                password=client["nats_password"],
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
                error_cb=quiet,
            )
        except Exception:
            return False
        await connection.close()
        return True

    return asyncio.run(attempt())


def test_old_and_new_credentials_work_between_steps_and_only_new_after_retire(
    aws_env: Any, tmp_path: Path
) -> None:
    ensure_plane_secrets("dynamo", [])
    before = files(tmp_path / "before", secret("dynamo"))  # a GPU task started before the rotation
    rotate("dynamo", "trust")
    trusting = files(tmp_path / "trusting", secret("dynamo"))  # one rolled after 'trust'
    rotate("dynamo", "issue")
    issued = files(tmp_path / "issued", secret("dynamo"))  # one rolled after 'issue'
    with secured_infra(tmp_path / "infra-issued", secret("infra")) as infra:
        # the members rolled after 'issue' present a certificate of the new CA
        assert etcd_put(infra.etcd_url, trusting) and etcd_put(infra.etcd_url, issued)
        # (the first holds the old NATS user, the second the next one: members accept both)
        assert nats_ok(infra.nats_url, trusting) and nats_ok(infra.nats_url, issued)
        assert trusting["nats_user"] != issued["nats_user"]
        # a task that was not rolled after 'trust' cannot verify them: why 'trust' comes with a roll
        assert not etcd_put(infra.etcd_url, before)
        assert not nats_ok(infra.nats_url, before)
    rotate("dynamo", "retire")
    retired = files(tmp_path / "retired", secret("dynamo"))
    with secured_infra(tmp_path / "infra-retired", secret("infra")) as infra:
        assert etcd_put(infra.etcd_url, retired) and nats_ok(infra.nats_url, retired)
        # the old CA's client certificate (a task still on 'trust') is refused once retired
        old_cert_new_trust = dict(trusting, ca_bundle=retired["ca_bundle"])
        assert not etcd_put(infra.etcd_url, old_cert_new_trust)
        # and so is its NATS user, the old one
        assert not nats_ok(infra.nats_url, old_cert_new_trust)
