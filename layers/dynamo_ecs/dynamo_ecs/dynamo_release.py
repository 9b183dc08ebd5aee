"""Dynamo release lines and what each one's image accepts. Pure.

One table, read by the local task runner (to fail locally where the real image would fail)
and by the operator (to refuse an image/command pair that cannot run). The facts come from
Dynamo's release notes and from running the PyPI releases (docs/dynamo-versions.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
