"""Dynamo release lines and what each one's image accepts. Pure.

One table, read by the operator (spec validation refuses an image/command pair that cannot
run, `command_problems`) and by the local task runner (which fails where the real image
would). The facts: FACTS.md §1-2 and the PyPI releases run here (docs/real-dynamo.md).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from dynamo_ecs.shell_words import ShellSyntaxError, shell_words, simple_commands

_TAG_RE = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?(?:[-.+].*)?$")


@dataclass(frozen=True)
class ReleaseLine:
    """What one ``major.minor`` line of the Dynamo runtime image accepts."""

    line: tuple[int, int]
    example_dir: str  # where the vLLM backend example lives, relative to the image's workdir
    prefill_flags: frozenset[str]  # flags that make a dynamo.vllm worker a prefill worker
    disaggregation_mode: bool  # --disaggregation-mode {agg,prefill,decode}
    needs_kv_transfer_config: bool  # disaggregated vLLM workers need --kv-transfer-config
    nats_required: bool  # the runtime cannot start without NATS

    @property
    def name(self) -> str:
        return f"{self.line[0]}.{self.line[1]}"


_IS_PREFILL = frozenset({"--is-prefill-worker"})
_BOTH = frozenset({"--is-prefill-worker", "--disaggregation-mode"})
_MODE = frozenset({"--disaggregation-mode"})

RELEASE_LINES: tuple[ReleaseLine, ...] = (
    ReleaseLine((0, 6), "components/backends/vllm", _IS_PREFILL, False, False, True),
    ReleaseLine((0, 7), "examples/backends/vllm", _IS_PREFILL, False, False, True),
    ReleaseLine((0, 8), "examples/backends/vllm", _IS_PREFILL, False, False, False),
    ReleaseLine((0, 9), "examples/backends/vllm", _IS_PREFILL, False, False, False),
    ReleaseLine((1, 0), "examples/backends/vllm", _BOTH, True, True, False),
    ReleaseLine((1, 1), "examples/backends/vllm", _BOTH, True, True, False),
    ReleaseLine((1, 2), "examples/backends/vllm", _BOTH, True, True, False),
    ReleaseLine((1, 3), "examples/backends/vllm", _BOTH, True, True, False),
    ReleaseLine((1, 4), "examples/backends/vllm", _MODE, True, True, False),
    ReleaseLine((1, 5), "examples/backends/vllm", _MODE, True, True, False),
    ReleaseLine((1, 6), "examples/backends/vllm", _MODE, True, True, False),
)
NEWEST = RELEASE_LINES[-1]


class UnknownReleaseError(ValueError):
    """An image tag that names no Dynamo release line this table knows."""


def image_tag(image: str) -> str:
    """The tag of an image reference (``repo/name:tag`` or ``repo/name:tag@sha256:...``)."""
    reference = image.split("@", 1)[0]
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return ""
    return tag


def release_of_image(image: str) -> ReleaseLine:
    """The release line of a Dynamo runtime image, from its tag (``vllm-runtime:1.6.1``)."""
    tag = image_tag(image)
    match = _TAG_RE.match(tag)
    if not match:
        raise UnknownReleaseError(
            f"image {image!r}: the tag {tag!r} is not a Dynamo release (use a version tag such as "
            f"vllm-runtime:{NEWEST.name}.1)"
        )
    line = (int(match["major"]), int(match["minor"]))
    for release in RELEASE_LINES:
        if release.line == line:
            return release
    if line > NEWEST.line:
        return NEWEST  # newer than the table: judged by the newest line known
    known = ", ".join(r.name for r in RELEASE_LINES)
    raise UnknownReleaseError(f"image {image!r}: release line {line[0]}.{line[1]} is not one of {known}")


ENGINE_MODULES = ("dynamo.vllm",)
PYTHONS = ("python", "python3")
SHELLS = ("sh", "bash", "/bin/sh", "/bin/bash")
KV_TRANSFER_CONFIG_EXAMPLE = """'{"kv_connector":"NixlConnector","kv_role":"kv_both"}'"""


def is_dynamo_runtime_image(image: str) -> bool:
    """NVIDIA's Dynamo runtime images (``.../ai-dynamo/vllm-runtime:TAG`` and the like)."""
    path = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return "/ai-dynamo/" in f"/{path}" and path.rsplit("/", 1)[-1].endswith("-runtime")


def is_engine_command(values: list[str]) -> bool:
    """``python3 -m dynamo.vllm ...``: a command that starts a Dynamo engine worker."""
    return len(values) >= 3 and values[0] in PYTHONS and values[1] == "-m" and values[2] in ENGINE_MODULES


def worker_flag_problems(args: list[str], release: ReleaseLine) -> list[str]:
    """What ``release``'s ``dynamo.vllm`` would refuse in ``args``, each with the fix."""
    problems: list[str] = []
    flags = {a.partition("=")[0] for a in args}
    for flag in ("--is-prefill-worker", "--disaggregation-mode"):
        if flag in flags and flag not in release.prefill_flags:
            other = (
                "--disaggregation-mode prefill" if flag == "--is-prefill-worker" else "--is-prefill-worker"
            )
            problems.append(f"{flag} does not exist on Dynamo {release.name}: use {other}")
    mode = flag_value(args, "--disaggregation-mode")
    if mode is not None and mode not in ("agg", "prefill", "decode"):
        problems.append(f"--disaggregation-mode {mode!r}: use agg, prefill or decode")
    disaggregated = "--is-prefill-worker" in flags or mode in ("prefill", "decode")
    kv_config = flag_value(args, "--kv-transfer-config")
    if kv_config is not None:
        try:
            json.loads(kv_config)
        except ValueError as error:
            problems.append(f"--kv-transfer-config is not JSON ({error}): {kv_config!r}")
    elif disaggregated and release.needs_kv_transfer_config:
        problems.append(
            f"a disaggregated dynamo.vllm worker on Dynamo {release.name} needs --kv-transfer-config "
            f"{KV_TRANSFER_CONFIG_EXAMPLE}"
        )
    return problems


def shell_script(argv: list[str]) -> str:
    """A container's entryPoint + command as one shell script: ``sh -c SCRIPT``'s, or the exec form joined."""
    return argv[2] if len(argv) >= 3 and argv[0] in SHELLS and argv[1] == "-c" else shlex.join(argv)


def engine_commands(argv: list[str]) -> list[list[str]]:
    """The arguments of each ``dynamo.vllm`` command in a container's entryPoint + command.

    Raises `ShellSyntaxError` for a script the shell could not parse.
    """
    commands = simple_commands(shell_words(shell_script(argv)))
    return [values[3:] for values in ([w.value for w in c] for c in commands) if is_engine_command(values)]


def command_problems(argv: list[str], release: ReleaseLine) -> list[str]:
    """What the ``release`` image would fail on in a container's entryPoint + command."""
    try:
        commands = simple_commands(shell_words(shell_script(argv)))
    except ShellSyntaxError as error:
        return [str(error)]
    problems: list[str] = []
    for words in commands:
        values = [w.value for w in words]
        if len(values) >= 2 and values[0] == "cd" and "backends/" in values[1]:
            directory = values[1].rstrip("/")
            if not directory.endswith(release.example_dir):
                problems.append(
                    f"cd {directory}: the Dynamo {release.name} image has no such directory (its vLLM "
                    f"example is in {release.example_dir}); change the cd or the image"
                )
        if is_engine_command(values):
            problems += worker_flag_problems(values[3:], release)
    return problems


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of ``flag`` (``--flag V`` or ``--flag=V``) in ``args``; None when it is not there."""
    for index, arg in enumerate(args):
        name, equals, inline = arg.partition("=")
        if name == flag:
            if equals:
                return inline
            return args[index + 1] if index + 1 < len(args) else ""
    return None
