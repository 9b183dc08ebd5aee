"""The replay benchmark prints the four figures of issue #8 in the bench format."""

from __future__ import annotations

import re

import pytest

from bench import bench_replay

FIGURE = re.compile(r"^figure: (\S+) (\d+(?:\.\d+)?) (\S+)$")


def test_the_four_figures_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    bench_replay.run()
    lines = capsys.readouterr().out.splitlines()
    figures = {m.group(1): (float(m.group(2)), m.group(3)) for line in lines if (m := FIGURE.match(line))}
    assert set(figures) == {
        "bursty_gpu_hours_ours",
        "bursty_gpu_hours_static",
        "bursty_sla_minutes_ours",
        "bursty_sla_minutes_target_tracking",
    }
    assert figures["bursty_gpu_hours_static"] == (48.0, "h")  # 8 GPUs for 6 h
    assert figures["bursty_sla_minutes_ours"][1] == "min"
    assert all(not line.startswith("figure:") or FIGURE.match(line) for line in lines)
