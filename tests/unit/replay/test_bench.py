"""The replay benchmark prints issue #16's figures in the bench format (one short trace here)."""

from __future__ import annotations

import re

import pytest

from bench import bench_replay

FIGURE = re.compile(r"^figure: (\S+) (-?\d+(?:\.\d+)?) (\S+)$")


def test_the_figures_of_a_trace_and_the_breach_to_serving_figures_are_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench_replay.run(traces=("step",), seeds=(1,), real=())
    lines = capsys.readouterr().out.splitlines()
    figures = {m.group(1): (float(m.group(2)), m.group(3)) for line in lines if (m := FIGURE.match(line))}
    assert set(figures) == {
        "sla_minutes_ours_step",
        "sla_minutes_best_peer_step",
        "gpu_hours_ours_step",
        "gpu_hours_best_peer_step",
        "sla_minutes_best_peer_level_step",
        "gpu_hours_best_peer_level_step",
        "scaling_changes_per_hour_ours_step",
        "sla_minutes_static_at_budget_step",
        "breach_to_serving_s_cold",
        "breach_to_serving_s_warm_pool",
    }
    assert figures["scaling_changes_per_hour_ours_step"][1] == "count"
    # "best peer" is the best of both views: never behind the best on the level field
    assert figures["sla_minutes_best_peer_step"][0] <= figures["sla_minutes_best_peer_level_step"][0]
    assert figures["gpu_hours_ours_step"][1] == "h" and figures["sla_minutes_ours_step"][1] == "min"
    # Without a warm pool a new replica waits for an instance launch and an image pull
    assert figures["breach_to_serving_s_cold"][0] > figures["breach_to_serving_s_warm_pool"][0] + 300
    assert all(not line.startswith("figure:") or FIGURE.match(line) for line in lines)
    # Which peer was best, and whether the goal was met, are said in words
    assert any(re.match(r"^# step: best peer \S+; ours -?\d+% fewer SLA minutes", line) for line in lines)


def test_a_trace_ours_misses_only_where_the_whole_budget_misses_is_also_scored_with_room(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # ramp's flat top is more than the default budget's 4 + 4 tasks serve within the SLA
    bench_replay.run(traces=("ramp",), seeds=(1,), real=())
    lines = capsys.readouterr().out.splitlines()
    figures = {m.group(1): float(m.group(2)) for line in lines if (m := FIGURE.match(line))}
    assert figures["sla_minutes_static_at_budget_ramp"] > 0
    assert figures["sla_minutes_ours_ramp"] == figures["sla_minutes_static_at_budget_ramp"]
    assert any("no policy within the budget meets the goal here" in line for line in lines)
    # with one more task of each allowed, the trace is scored again at GpuBudget 10
    assert {"sla_minutes_ours_ramp_budget_10", "gpu_hours_best_peer_ramp_budget_10"} <= set(figures)
    assert figures["sla_minutes_ours_ramp_budget_10"] < figures["sla_minutes_ours_ramp"]


def test_a_real_trace_is_scored_from_the_repository_s_file_on_both_views(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench_replay.run(traces=(), seeds=(1,), real=("servegen_60",))
    lines = capsys.readouterr().out.splitlines()
    figures = {m.group(1): float(m.group(2)) for line in lines if (m := FIGURE.match(line))}
    assert {
        "sla_minutes_ours_servegen_60",
        "sla_minutes_best_peer_level_servegen_60",
        "gpu_hours_best_peer_level_servegen_60",
        "scaling_changes_per_hour_ours_servegen_60",
    } <= set(figures)
    # both views are printed: the peers on the capacity provider's path and with scale-ahead
    assert any(line.startswith("# servegen_60 best peer on the capacity provider's path: ") for line in lines)
    assert any(
        line.startswith("# servegen_60 best peer on the level field (scale-ahead): ") for line in lines
    )
    assert any(re.match(r"^# servegen_60 keda_level: ", line) for line in lines)
    # one hour of real traffic on at most 8 GPUs
    assert 0 < figures["gpu_hours_ours_servegen_60"] <= 8.0
