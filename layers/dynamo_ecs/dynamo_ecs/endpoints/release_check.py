"""The spec check of Dynamo release lines: an image and a command that cannot run together.

Plugged into spec validation (`spec_validation.DEFAULT_CHECKS`), so a redeploy or a
bootstrap refuses, before anything is stored, a Dynamo image whose tag names no release
(``my-tag``), a flag the image's release does not have (``--is-prefill-worker`` on 1.4+),
a disaggregated worker without the KV transfer config 1.0+ needs, or a ``cd`` into an
example directory the image lacks. Images other than NVIDIA's Dynamo runtime images are
not judged (a mirror under another name is not recognised).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dynamo_ecs.dynamo_release import (
    UnknownReleaseError,
    command_problems,
    is_dynamo_runtime_image,
    release_of_image,
)


def check_dynamo_release(spec: dict[str, Any]) -> Iterator[str]:
    containers = spec.get("containerDefinitions")
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, dict) or not isinstance(container.get("image"), str):
            continue
        image = container["image"]
        if not is_dynamo_runtime_image(image):
            continue
        path = f"$.containerDefinitions[{index}]"
        try:
            release = release_of_image(image)
        except UnknownReleaseError as error:
            yield f"{path}.image: {error}"
            continue
        argv = [str(w) for w in (container.get("entryPoint") or []) + (container.get("command") or [])]
        for problem in command_problems(argv, release):
            yield f"{path}.command: {problem}"
