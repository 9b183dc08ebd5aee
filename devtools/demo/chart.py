"""The demo's PNG timeline: load and backlog, TTFT against its target, tasks per service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devtools.demo.scenario import DemoResult
from dynamo_ecs.config import ServiceRole


def write_chart(result: DemoResult, path: Path, ttft_target_ms: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    minutes = [s.minute for s in result.samples]
    figure, axes = plt.subplots(
        4, 1, figsize=(11, 10), sharex=True, constrained_layout=True, height_ratios=[1.2, 1.2, 1, 1]
    )
    load_axis, ttft_axis, *task_axes = axes
    figure.suptitle("dynamo-ecs-operator local demo: each point is one simulated minute")

    # A sample's load and latency describe the minute that ends at its x: steps "pre".
    load_axis.step(
        minutes, [s.load for s in result.samples], where="pre", color="tab:purple", label="load (requests/s)"
    )
    load_axis.set_ylabel("requests/s")
    lag_axis = load_axis.twinx()
    lag_axis.step(
        minutes,
        [s.lag for s in result.samples],
        where="pre",
        color="tab:brown",
        alpha=0.7,
        label="JetStream lag",
    )
    lag_axis.set_ylabel("prefill backlog (messages)")
    handles = load_axis.get_legend_handles_labels()[0] + lag_axis.get_legend_handles_labels()[0]
    load_axis.legend(handles=handles, loc="center right")

    ttft_axis.plot(
        minutes,
        [s.ttft_ms for s in result.samples],
        marker="o",
        color="tab:red",
        label="TTFT (published, the target's statistic)",
    )
    ttft_axis.axhline(ttft_target_ms, color="tab:red", linestyle="--", label=f"target {ttft_target_ms:g} ms")
    ttft_axis.set_ylabel("TTFT (ms)")
    ttft_axis.legend(loc="upper right")

    # Counts hold from the decision on: steps "post".
    roles: tuple[tuple[Any, ServiceRole, str], ...] = (
        (task_axes[0], "frontend", "tab:blue"),
        (task_axes[1], "prefill", "tab:green"),
    )
    for axis, role, color in roles:
        axis.step(
            minutes, [s.desired[role] for s in result.samples], where="post", color=color, label="desired"
        )
        axis.step(
            minutes,
            [s.running[role] for s in result.samples],
            where="post",
            color=color,
            linestyle=":",
            label="running",
        )
        axis.set_ylabel(f"{role} tasks")
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylim(0, max(max(s.desired[role] for s in result.samples), 1) + 1)
        axis.legend(loc="upper right")
    task_axes[1].set_xlabel("simulated minutes")

    for axis in axes:
        axis.grid(alpha=0.3)
        for minute, _ in result.marks:
            axis.axvline(minute, color="grey", linewidth=0.8, alpha=0.6)
    for index, (minute, label) in enumerate(result.marks):
        load_axis.annotate(
            label,
            (minute, 0.95 - 0.12 * (index % 3)),
            xycoords=("data", "axes fraction"),
            ha="left",
            va="top",
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
        )
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
