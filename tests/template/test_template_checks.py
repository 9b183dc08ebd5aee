"""The template passes the offline checks a deploy depends on: cfn-lint, sam validate, sam build."""

from __future__ import annotations

import json
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


@pytest.mark.xdist_group("sam")
@pytest.mark.parametrize("source", ["template.yaml", "transformed"])
def test_checkov_finds_nothing_that_is_not_skipped_inline_with_its_reason(
    source: str, tmp_path: Path
) -> None:
    # checkov lives in its own virtual environment (FACTS.md §6), installed by `make setup`
    checkov = ROOT / ".tools" / "checkov" / "bin" / "checkov"
    assert checkov.exists(), "run `make setup` (installs checkov into .tools/checkov)"
    target = ROOT / "template.yaml"
    if source == "transformed":  # what CloudFormation deploys: SAM's roles and rules included
        from tests.template.stack import transformed_template

        target = tmp_path / "transformed.json"
        target.write_text(json.dumps(transformed_template()))
    result = _run(
        str(checkov), "-f", str(target), "--framework", "cloudformation", "--skip-download", "-o", "json"
    )  # fmt: skip
    report = json.loads(result.stdout)
    summary, results = report["summary"], report["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results.get("failed_checks", [])]
    assert failed == []
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 100  # the template was really read, SAM functions included
    for skipped in results.get("skipped_checks", []):
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) >= 30, f"{skipped['check_id']} on {skipped['resource']}: say why it is skipped"


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
    # sam build skips a missing CodeUri silently: every function must have its handler built
    from devtools.template import resources_of_type

    for name in resources_of_type("AWS::Serverless::Function"):
        assert (build_dir / name / "app.py").exists(), f"{name}: no app.py built (missing CodeUri?)"
