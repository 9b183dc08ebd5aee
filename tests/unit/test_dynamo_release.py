"""Release lines are read from image tags; placeholders and unknown lines are refused."""

from __future__ import annotations

import pytest

from dynamo_ecs.dynamo_release import NEWEST, UnknownReleaseError, image_tag, release_of_image


@pytest.mark.parametrize(
    ("image", "line"),
    [
        ("nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1", (1, 6)),
        ("nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.1", (0, 6)),
        ("registry.example:5000/dynamo/vllm-runtime:1.0.0-cuda12", (1, 0)),
        ("nvcr.io/nvidia/ai-dynamo/vllm-runtime:9.1.0", NEWEST.line),
    ],
)
def test_release_line_from_the_tag(image: str, line: tuple[int, int]) -> None:
    assert release_of_image(image).line == line


@pytest.mark.parametrize(
    "image", ["nvcr.io/nvidia/ai-dynamo/vllm-runtime:my-tag", "vllm-runtime", "x:latest"]
)
def test_a_tag_that_names_no_release_is_refused(image: str) -> None:
    with pytest.raises(UnknownReleaseError, match="not a Dynamo release"):
        release_of_image(image)


def test_a_line_older_than_the_table_is_refused() -> None:
    with pytest.raises(UnknownReleaseError, match=r"0\.3 is not one of"):
        release_of_image("nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.3.2")


def test_image_tag_with_a_registry_port_and_a_digest() -> None:
    assert image_tag("host:5000/a/b:1.2.3@sha256:" + "a" * 64) == "1.2.3"
    assert image_tag("host:5000/a/b") == ""
