"""The etcd maintenance script (infra_settings.maintenance_script): the one value a caller sets
(ACTION) is checked by the script itself before etcd is asked anything; the rest is fixed text."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dynamo_ecs.planes.infra_settings import (
    MAINTENANCE_ACTIONS,
    expected_role_text,
    maintenance_script,
    root_writer_script,
)


def run(
    tmp_path: Path, action: str | None, endpoints: str = "https://a:2379"
) -> subprocess.CompletedProcess[str]:
    """The script with a stand-in etcdctl that records each call and fails."""
    calls = tmp_path / "calls"
    fake = tmp_path / "etcdctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "MEMBER_ENDPOINTS": endpoints}
    if action is not None:
        env["ACTION"] = action
    return subprocess.run(
        ["sh", "-c", maintenance_script(str(tmp_path), etcdctl=str(fake))],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    "action", ["", "defrag", "recover; touch pwned", "$(touch pwned)", "status recover", "RECOVER", None]
)
def test_an_action_outside_the_fixed_set_is_refused_before_etcd_is_asked(
    tmp_path: Path, action: str | None
) -> None:
    done = run(tmp_path, action)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ACTION must be one of: status recover" in done.stdout
    assert not (tmp_path / "calls").exists()  # etcdctl never ran
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_no_member_endpoints_is_refused(tmp_path: Path) -> None:
    done = run(tmp_path, "status", endpoints="")
    assert done.returncode == 2 and "MEMBER_ENDPOINTS is empty" in done.stdout
    assert not (tmp_path / "calls").exists()


@pytest.mark.parametrize("action", MAINTENANCE_ACTIONS)
def test_a_known_action_asks_every_member_and_fails_when_none_answers(tmp_path: Path, action: str) -> None:
    done = run(tmp_path, action, endpoints="https://a:2379 https://b:2379")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PROBLEM: https://a:2379 does not answer" in done.stdout
    assert "PROBLEM: https://b:2379 does not answer" in done.stdout
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith("--endpoints=https://a:2379 ") and calls[0].endswith("endpoint status -w json")
    # root's files, with the directory given (quoted as one word each)
    assert f"--cert={tmp_path}/root.pem" in calls[0]
    assert not any("defrag" in c for c in calls)  # no leader known: nothing defragmented


def test_the_expected_roles_are_etcd_auth_script_s() -> None:
    assert expected_role_text("dynamo") == (
        "Role dynamo KV Read: [v1/, v10) (prefix v1/) KV Write: [v1/, v10) (prefix v1/)"
    )
    assert expected_role_text("operator") == "Role operator KV Read: KV Write:"
    with pytest.raises(ValueError, match="root"):
        expected_role_text("root")


def test_a_directory_with_a_space_stays_one_word(tmp_path: Path) -> None:
    script = maintenance_script("/my planes", etcdctl="/usr/local/bin/etcdctl")
    assert "'--cacert=/my planes/ca.pem'" in script
    writer = root_writer_script("/my planes", tools_dir="/my tools")
    assert "> '/my planes/root-key.pem'" in writer and "'/my tools/busybox'" in writer
    assert "member" not in writer  # no member key, no NATS config


def test_the_writer_writes_root_s_files_only(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    script = root_writer_script(str(tmp_path / "planes"), tools_dir=str(tools)).replace(
        "cp /bin/busybox", "cp /bin/sh"
    )
    env = {"PATH": "/usr/bin:/bin", "PLANES_CA": "ca", "PLANES_ROOT_CERT": "cert", "PLANES_ROOT_KEY": "key"}
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=10)
    files = {p.name: p.read_text() for p in (tmp_path / "planes").iterdir()}
    assert files == {"ca.pem": "ca\n", "root.pem": "cert\n", "root-key.pem": "key\n"}
    assert all(((tmp_path / "planes" / n).stat().st_mode & 0o777) == 0o600 for n in files)
