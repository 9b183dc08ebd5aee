"""The replay benchmark prints issue #16's figures in the bench format (one short trace here)."""

from __future__ import annotations

import re

import pytest

from bench import bench_replay

FIGURE = re.compile(r"^figure: (\S+) (-?\d+(?:\.\d+)?) (\S+)$")


def test_the_figures_of_a_trace_and_the_breach_to_serving_figures_are_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench_replay.run(traces=("step",), seeds=(1,))
    lines = capsys.readouterr().out.splitlines()
    figures = {m.group(1): (float(m.group(2)), m.group(3)) for line in lines if (m := FIGURE.match(line))}
    assert set(figures) == {
        "sla_minutes_ours_step",
        "sla_minutes_best_peer_step",
        "gpu_hours_ours_step",
        "gpu_hours_best_peer_step",
        "breach_to_serving_s_cold",
        "breach_to_serving_s_warm_pool",
    }
    assert figures["gpu_hours_ours_step"][1] == "h" and figures["sla_minutes_ours_step"][1] == "min"
    # Without a warm pool a new replica waits for an instance launch and an image pull
    assert figures["breach_to_serving_s_cold"][0] > figures["breach_to_serving_s_warm_pool"][0] + 300
    assert all(not line.startswith("figure:") or FIGURE.match(line) for line in lines)
    # Which peer was best, and whether the goal was met, are said in words
    assert any(re.match(r"^# step: best peer \S+; ours -?\d+% fewer SLA minutes", line) for line in lines)
