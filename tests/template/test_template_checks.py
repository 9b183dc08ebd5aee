"""The template passes the offline checks a deploy depends on: cfn-lint, sam validate, sam build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        SAM_CLI_TELEMETRY="0",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    return env


def _run(*argv: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=_offline_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.xdist_group("sam")
def test_cfn_lint_is_clean() -> None:
    result = _run(str(BIN / "cfn-lint"), "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.xdist_group("sam")
def test_sam_validate_lint_is_clean() -> None:
    result = _run(str(BIN / "sam"), "validate", "--lint", "--template-file", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("sam")
def test_sam_build_succeeds(tmp_path: Path) -> None:
    build_dir = tmp_path / "build"
    result = _run(
        str(BIN / "sam"), "build", "--template-file", str(ROOT / "template.yaml"),
        "--build-dir", str(build_dir), "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built = build_dir / "template.yaml"
    assert built.exists()
    layer_dirs = list(build_dir.glob("SharedLayer/python/dynamo_ecs/config.py"))
    assert layer_dirs, "the layer must carry the dynamo_ecs package under python/"
    assert list(build_dir.glob("SharedLayer/python/pydantic")), "runtime dependencies are installed"
