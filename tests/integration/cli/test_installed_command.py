"""The ``dynamo-ecs`` console script as ``pip install .`` installs it, run from outside the source tree.

Offline: the wheel is built with the dev environment's setuptools and installed without its
dependencies into a fresh venv that sees the dev environment's packages (``make install-check``
does the full ``pip install .`` from the package index).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from devtools.template import load_template
from dynamo_ecs_cli import doctor
from dynamo_ecs_cli.stack import OUTPUTS_USED
from tests.integration.cli.conftest import ROOT


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_the_wheel_installs_a_working_dynamo_ecs(tmp_path: Path) -> None:
    # Given the project's wheel
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        tmp_path / "dist",
        ROOT,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("dynamo_ecs_operator-*.whl")
    # When it is installed into a fresh venv (dependencies from the dev environment)
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    site = Path(
        run(
            venv / "bin" / "python",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            cwd=tmp_path,
        ).stdout.strip()
    )
    (site / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed = run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp_path,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr
    # Then the console script runs from anywhere, on the installed packages
    version = run(venv / "bin" / "dynamo-ecs", "--version", cwd=tmp_path, env=env)
    assert version.returncode == 0 and "dynamo-ecs, version" in version.stdout
    for command in ("doctor", "status", "decisions", "redeploy"):
        helped = run(venv / "bin" / "dynamo-ecs", command, "--help", cwd=tmp_path, env=env)
        assert helped.returncode == 0 and "--stack" in helped.stdout, command
    where = run(
        venv / "bin" / "python",
        "-c",
        "import dynamo_ecs, dynamo_ecs_cli, importlib.resources as r; print(dynamo_ecs.__file__); "
        "print(dynamo_ecs_cli.__file__); "
        "print(r.files('dynamo_ecs.specs').joinpath('frontend.json').is_file())",
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    assert all(str(venv) in path for path in where[:2]) and where[2] == "True"
    # And it declares what it imports
    requires = run(
        venv / "bin" / "python",
        "-c",
        "import importlib.metadata as m; print(' '.join(m.requires('dynamo-ecs-operator')))",
        cwd=tmp_path,
        env=env,
    ).stdout
    for dependency in ("boto3", "pydantic", "click", "rich", "matplotlib"):
        assert dependency in requires


def test_the_cli_does_not_import_the_layers_lambda_dependencies() -> None:
    probe = "import sys, dynamo_ecs_cli.main; print('aws_lambda_powertools' in sys.modules)"
    pythonpath = os.pathsep.join(str(ROOT / p) for p in ("layers/dynamo_ecs", "cli"))
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "False", done.stderr


def test_the_stack_outputs_and_parameters_the_cli_reads_are_template_yamls() -> None:
    template = load_template()
    assert set(OUTPUTS_USED) <= set(template["Outputs"])
    assert {"TaskSubnetIds", "NgcSecretArn", "DeploymentName", *doctor.TEMPLATE_DEFAULTS} <= set(
        template["Parameters"]
    )
