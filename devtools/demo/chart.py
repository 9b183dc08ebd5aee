"""The demo's PNG timeline: load, the real TTFT against its target, tasks per service, outages."""

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

    seconds = [s.t_s for s in result.samples]
    figure, axes = plt.subplots(
        4, 1, figsize=(11, 10), sharex=True, constrained_layout=True, height_ratios=[1, 1.3, 1, 1]
    )
    load_axis, ttft_axis, *task_axes = axes
    figure.suptitle("dynamo-ecs-operator local demo: real Dynamo processes, real time")

    load_axis.step(seconds, [s.load for s in result.samples], where="post", color="tab:purple", label="load")
    load_axis.set_ylabel("completions/s sent")
    load_axis.legend(loc="upper right")

    ttft_points = [(s.t_s, s.ttft_ms) for s in result.samples if s.ttft_ms is not None]
    ttft_axis.plot(
        [t for t, _ in ttft_points],
        [v for _, v in ttft_points],
        marker="o",
        color="tab:red",
        label="TTFT p90, published from the real frontends' /metrics",
    )
    ttft_axis.axhline(ttft_target_ms, color="tab:red", linestyle="--", label=f"target {ttft_target_ms:g} ms")
    ttft_axis.set_yscale("log")
    ttft_axis.set_ylabel("TTFT p90 (ms, log)")
    ttft_axis.legend(loc="upper right")

    roles: tuple[tuple[Any, ServiceRole, str], ...] = (
        (task_axes[0], "frontend", "tab:blue"),
        (task_axes[1], "prefill", "tab:green"),
    )
    for axis, role, color in roles:
        axis.step(
            seconds, [s.desired[role] for s in result.samples], where="post", color=color, label="desired"
        )
        axis.step(
            seconds,
            [s.running[role] for s in result.samples],
            where="post",
            color=color,
            linestyle=":",
            label="running (processes)",
        )
        axis.set_ylabel(f"{role} tasks")
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        top = max([s.desired[role] for s in result.samples] + [1])
        axis.set_ylim(0, top + 1)
        axis.legend(loc="upper right")
    task_axes[1].set_xlabel("seconds since the demo started")

    right = max([*seconds, *(m for m, _ in result.marks), 1.0])
    for axis in axes:
        axis.grid(alpha=0.3)
        for mark, _ in result.marks:
            axis.axvline(mark, color="grey", linewidth=0.8, alpha=0.6)
        for begin, end, _ in result.outages:
            axis.axvspan(begin, right if end is None else end, color="tab:orange", alpha=0.25)
    for index, (mark, label) in enumerate(result.marks):
        load_axis.annotate(
            label,
            (mark, 0.95 - 0.14 * (index % 4)),
            xycoords=("data", "axes fraction"),
            ha="left",
            va="top",
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
        )
    for index, (begin, end, label) in enumerate(result.outages):
        duration = "never" if end is None else f"{end - begin:.0f} s"
        ttft_axis.annotate(
            f"{label}: {duration}",
            (begin, 0.9 - 0.12 * index),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            color="tab:orange",
            xytext=(3, 0),
            textcoords="offset points",
        )
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
