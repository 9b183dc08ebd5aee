"""``python -m dynamo_ecs_cli.replay`` end to end: the table, the PNG, and input errors that stop it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dynamo_ecs_cli.replay.catalog import POLICIES
from dynamo_ecs_cli.replay.cli import UsageError, config_with_overrides, export_window, main

ROOT = Path(__file__).resolve().parents[3]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_module_writes_the_table_and_the_chart(tmp_path: Path) -> None:
    # When the entry point runs in a fresh interpreter, as `make replay` runs it
    out = tmp_path / "replay"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dynamo_ecs_cli",
            "replay",
            "--trace",
            "step",
            "--hours",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'layers' / 'dynamo_ecs'}:{ROOT / 'cli'}:{ROOT}",
            "COLUMNS": "120",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then it succeeds, prints one row per policy and writes the table, a summary and a PNG
    assert done.returncode == 0, done.stderr
    for policy in ("ours", "target_tracking", "hpa", "static"):
        assert policy in done.stdout
    assert "SLA-violation min" in done.stdout and "GPU-hours" in done.stdout
    chart = out / "step-seed1.png"
    assert chart.read_bytes()[:8] == PNG_MAGIC and chart.stat().st_size > 10_000
    assert "target_tracking" in (out / "step-seed1.txt").read_text()
    summary = json.loads((out / "step-seed1.json").read_text())
    assert [r["policy"] for r in summary["results"]] == list(POLICIES)
    assert summary["hours"] == 2


def test_a_bad_csv_row_stops_the_replay_and_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,request_rate\n0,1\n60,lots\n", encoding="utf-8")
    assert main(["--trace", str(trace), "--out", str(tmp_path / "out")]) == 2
    assert "line 3, column request_rate" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_set_overrides_are_validated_like_the_stack_config() -> None:
    config = config_with_overrides(["frontend.max=6", "frontend.targets.ttft_ms=400"], environ={})
    assert config.frontend.max == 6 and config.frontend.targets.ttft_ms == 400
    with pytest.raises(UsageError, match=r"frontend.max \(0\) < frontend.min \(1\)"):
        config_with_overrides(["frontend.max=0"], environ={})
    with pytest.raises(UsageError, match=r"expected key\.path=value"):
        config_with_overrides(["frontend.max"], environ={})


def test_the_stack_environment_is_the_base() -> None:
    config = config_with_overrides([], environ={"DYNAMO_ECS_PREFILL__MAX": "2", "HOME": "/root"})
    assert config.prefill.max == 2


def test_bad_knobs_and_policies_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "model_load_s=-1", "--out", str(tmp_path)]) == 2
    assert "model_load_s" in capsys.readouterr().err
    assert main(["--policies", "ours,magic", "--out", str(tmp_path)]) == 2
    assert "unknown magic" in capsys.readouterr().err


def test_export_command_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--export-command", "--start", "2026-11-20T00:00:00Z", "--end", "2026-11-21T00:00:00Z"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("aws cloudwatch get-metric-data ") and printed.strip().endswith("> trace.json")


def test_the_export_window_defaults_to_the_last_seven_days() -> None:
    now = datetime(2026, 11, 29, 4, 51, 17, tzinfo=UTC)
    assert export_window(None, None, now) == ("2026-11-22T04:51:00Z", "2026-11-29T04:51:00Z")
    assert export_window("2026-11-01T00:00:00+02:00", "2026-11-02", now) == (
        "2026-10-31T22:00:00Z",
        "2026-11-02T00:00:00Z",
    )
    with pytest.raises(UsageError, match="before"):
        export_window("2026-11-03", "2026-11-02", now)
    with pytest.raises(UsageError, match="not ISO 8601"):
        export_window("last tuesday", None, now)


def test_replay_is_a_click_command_of_dynamo_ecs_with_its_options_in_help() -> None:
    from click.testing import CliRunner

    from dynamo_ecs_cli.main import cli

    result = CliRunner().invoke(cli, ["replay", "--help"])
    assert result.exit_code == 0
    for option in ("--trace", "--scale-to", "--at-trace-lengths", "--set", "--model", "--policies", "--out"):
        assert option in result.output
    # an option click does not know is a usage error (exit 2), named
    bad = CliRunner().invoke(cli, ["replay", "--tracee", "step"])
    assert bad.exit_code == 2 and "--tracee" in bad.output


def test_a_per_request_trace_is_scaled_to_the_capacity_and_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a per-request trace of 20 minutes, 6 requests/s of 2000 input and 100 output tokens
    rows = "".join(f"{i / 6:.3f},2000,100\n" for i in range(6 * 1200))
    trace = tmp_path / "requests.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + rows, encoding="utf-8")
    out = tmp_path / "out"
    # When it is replayed at 50 % of the budget's capacity, the model at its lengths
    code = main(
        [
            "--trace",
            str(trace),
            "--at-trace-lengths",
            "--scale-to",
            "0.5",
            "--policies",
            "ours,static",
            "--no-chart",
            "--out",
            str(out),
        ]
    )
    # Then the summary names the scaled trace and the model's lengths are the trace's
    assert code == 0
    summary = json.loads((out / "requests-at50.json").read_text())
    assert summary["model"]["input_tokens"] == 2000 and summary["model"]["output_tokens"] == 100
    assert [r["policy"] for r in summary["results"]] == ["ours", "static"]
    # And a fraction out of range stops it before anything runs
    assert main(["--trace", str(trace), "--scale-to", "0", "--out", str(out)]) == 2
    assert "fraction of the capacity" in capsys.readouterr().err
