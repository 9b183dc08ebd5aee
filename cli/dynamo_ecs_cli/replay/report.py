"""The replay's output: a table per policy (rich) and a PNG chart (matplotlib, Agg)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.simulate import RunResult, SlaTargets
from dynamo_ecs_cli.replay.traces import Trace

# (colour, line style, width): ours drawn last and thickest would hide HPA where they agree,
# so HPA is dashed on top of it.
STYLES = {
    "ours": ("tab:blue", "-", 2.0),
    "step_60s": ("tab:red", ":", 1.0),
    "step_10s": ("tab:red", "-", 1.0),
    "keda": ("tab:purple", "-", 1.0),
    "planner_60s_constant": ("tab:brown", "-", 1.0),
    "planner_60s_trend": ("tab:brown", "--", 1.0),
    "planner_180s_constant": ("tab:olive", "-", 1.0),
    "planner_180s_trend": ("tab:olive", "--", 1.0),
    "target_tracking": ("tab:orange", "-", 1.2),
    "hpa": ("tab:green", "--", 1.2),
    "static": ("tab:gray", "-", 1.2),
}


def results_table(trace: Trace, results: list[RunResult]) -> Table:
    hours = trace.duration_s / 3600
    table = Table(title=f"Policy replay: {trace.name} ({hours:g} h)")
    table.add_column("policy")
    table.add_column("SLA-violation min", justify="right")
    table.add_column("GPU-hours", justify="right")
    table.add_column("vs static", justify="right")
    table.add_column("scale actions", justify="right")
    table.add_column("peak queue", justify="right")
    static = next((r.gpu_hours for r in results if r.policy == "static"), None)
    for r in results:
        saving = f"{(r.gpu_hours / static - 1) * 100:+.0f} %" if static else "-"
        table.add_row(
            r.policy,
            f"{r.sla_minutes:.1f}",
            f"{r.gpu_hours:.1f}",
            saving,
            str(r.scale_actions),
            f"{r.peak_queue:.0f}",
        )
    return table


def print_table(table: Table) -> str:
    """Print the table to stdout (colours on a terminal) and return it as plain text."""
    console = Console(width=110, record=True)
    console.print(table)
    return console.export_text()


def write_chart(
    path: Path, trace: Trace, results: list[RunResult], sla: SlaTargets, params: ModelParams
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (load_ax, gpu_ax, ttft_ax) = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    first = results[0].series
    hours = [(t - trace.start) / 3600 for t in first.at]
    start = datetime.fromtimestamp(trace.start, UTC).strftime("%Y-%m-%d %H:%M UTC")

    load_ax.plot(hours, first.load_rps, color="black", linewidth=1)
    load_ax.set_ylabel("load (requests/s)")
    load_ax.set_title(
        f"{trace.name}: start-up {params.startup_s:g} s (warm pool {params.warm_pool_size}), "
        f"{params.replica_rps('frontend', params.input_tokens, params.output_tokens):g} req/s per "
        f"decode replica, {params.replica_rps('prefill', params.input_tokens, params.output_tokens):g} "
        f"per prefill replica"
    )

    for r in results:
        color, style, width = STYLES.get(r.policy, ("black", "-", 1.0))
        gpu_ax.step(
            hours, r.series.gpus, where="post", label=r.policy, color=color, linestyle=style, linewidth=width
        )
        ttft = [float("nan") if v is None else v for v in r.series.ttft_p90_ms]
        ttft_ax.plot(hours, ttft, label=r.policy, color=color, linestyle=style, linewidth=width * 0.8)
    gpu_ax.set_ylabel("GPUs billed (instances)")
    gpu_ax.legend(loc="upper right", fontsize="small")
    if sla.ttft_p90_ms is not None:
        ttft_ax.axhline(sla.ttft_p90_ms, color="red", linestyle="--", linewidth=1, label="TTFT target")
    ttft_ax.set_yscale("log")
    ttft_ax.set_ylabel("TTFT p90 (ms)")
    ttft_ax.set_xlabel(f"hours since {start}")
    ttft_ax.legend(loc="upper right", fontsize="small")
    for ax in (load_ax, gpu_ax, ttft_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
