"""Traces: the CSV and CloudWatch loaders, their errors, and the seeded synthetic traces."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs_cli.replay import traces
from dynamo_ecs_cli.replay.traces import TraceError, load_cloudwatch, load_csv, load_trace_file, resolve_trace


def write(tmp_path: Path, text: str, name: str = "week.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_iso_and_epoch_timestamps_and_optional_lengths(tmp_path: Path) -> None:
    # Given a CSV mixing ISO 8601 and epoch seconds, lengths on some rows only
    path = write(
        tmp_path,
        "timestamp,request_rate,input_tokens,output_tokens\n"
        "2026-11-20T00:00:00Z,4.5,1200,300\n"
        "1795132860,5,,\n"
        "\n"
        "2026-11-20T00:02:00,6,800,\n",
    )
    # When it is loaded
    trace = load_csv(path)
    # Then every row is a point, in order, with its lengths or None
    assert [p.request_rate for p in trace.points] == [4.5, 5.0, 6.0]
    assert trace.points[0].at == 1795132800.0
    assert trace.points[0].input_tokens == 1200 and trace.points[0].output_tokens == 300
    assert trace.points[1].input_tokens is None
    assert trace.points[2].input_tokens == 800 and trace.points[2].output_tokens is None
    assert trace.step_s == 60 and trace.duration_s == 180


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timestamp,request_rate\n0,1\n60,abc\n", "line 3, column request_rate: 'abc' is not a number"),
        ("timestamp,request_rate\n0,1\n60,-2\n", "line 3, column request_rate: '-2' must be"),
        ("timestamp,request_rate\n0,1\nyesterday,2\n", "line 3, column timestamp: 'yesterday'"),
        ("timestamp,request_rate\n60,1\n60,2\n", "line 3, column timestamp: not after"),
        ("timestamp,request_rate\n0,1,7\n", "line 2: 3 fields, the header has 2"),
        ("time,request_rate\n0,1\n", "line 1: missing column(s) timestamp"),
        ("timestamp,request_rate,colour\n0,1,red\n", "line 1: unknown column(s) colour"),
        ("timestamp,request_rate,input_tokens\n0,1,0\n", "line 2, column input_tokens: '0' must be"),
        ("timestamp,request_rate\n", "no data rows"),
        ("", "empty file"),
    ],
)
def test_a_bad_csv_names_its_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TraceError) as err:
        load_csv(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_cloudwatch_export_pages_are_merged_and_sorted(tmp_path: Path) -> None:
    # Given get-metric-data output in two pages, newest first (CloudWatch's default order)
    pages = {
        "MetricDataResults": [
            {"Id": "rate", "Timestamps": ["2026-11-20T00:02:00Z", "2026-11-20T00:01:00Z"], "Values": [3, 2]},
            {"Id": "rate", "Timestamps": ["2026-11-20T00:00:00+00:00"], "Values": [1.5]},
        ],
        "Messages": [],
    }
    path = write(tmp_path, json.dumps(pages), "export.json")
    # When it is loaded through the file dispatcher
    trace = load_trace_file(path)
    # Then the points are in time order
    assert [p.request_rate for p in trace.points] == [1.5, 2.0, 3.0]
    assert trace.points[1].at - trace.points[0].at == 60


def test_cloudwatch_export_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="line 1, column 2: not valid JSON"):
        load_cloudwatch(write(tmp_path, "{oops", "a.json"))
    with pytest.raises(TraceError, match="no MetricDataResults"):
        load_cloudwatch(write(tmp_path, "{}", "b.json"))
    with pytest.raises(TraceError, match="has no datapoints"):
        load_cloudwatch(write(tmp_path, '{"MetricDataResults": [{"Id": "rate"}]}', "c.json"))


def test_export_command_queries_the_frontend_request_rate() -> None:
    config = DeploymentConfig.model_validate({"deployment": "prod"})
    command = traces.export_command(config, "2026-11-20T00:00:00Z", "2026-11-27T00:00:00Z")
    assert command.startswith("aws cloudwatch get-metric-data --metric-data-queries '")
    query = json.loads(command.split("'")[1])
    stat = query[0]["MetricStat"]
    assert query[0]["Id"] == traces.EXPORT_QUERY_ID
    assert stat["Metric"]["Namespace"] == "DynamoEcs"
    assert stat["Metric"]["MetricName"] == "RequestRate"
    assert {"Name": "Service", "Value": "frontend"} in stat["Metric"]["Dimensions"]
    assert {"Name": "Deployment", "Value": "prod"} in stat["Metric"]["Dimensions"]
    assert "--start-time 2026-11-20T00:00:00Z --end-time 2026-11-27T00:00:00Z" in command


@pytest.mark.parametrize("name", ["diurnal", "bursty", "step", "ramp", "onoff", "flash"])
def test_synthetic_traces_are_reproducible_with_a_seed(name: str) -> None:
    first = resolve_trace(name, seed=7, hours=2)
    again = resolve_trace(name, seed=7, hours=2)
    other = resolve_trace(name, seed=8, hours=2)
    assert first == again
    assert first.points != other.points
    assert first.duration_s == 2 * 3600
    assert all(p.request_rate >= 0 for p in first.points)


def test_synthetic_shapes() -> None:
    step = traces.step(hours=3, seed=1)
    rates = [p.request_rate for p in step.points]
    assert max(rates[:50]) < 8 < min(rates[70:110])  # low, then high
    ramp = [p.request_rate for p in traces.ramp(hours=3, seed=1).points]
    assert ramp[-1] > 4 * ramp[0]
    diurnal = [p.request_rate for p in traces.diurnal(seed=1).points]
    assert diurnal.index(max(diurnal)) // 60 in range(14, 19)  # afternoon peak
    assert diurnal.index(min(diurnal)) // 60 in range(2, 7)  # small hours trough
    bursty = [p.request_rate for p in traces.bursty(seed=1).points]
    assert max(bursty) > 2.5 * sorted(bursty)[len(bursty) // 2]  # flash crowds over the median


def test_a_file_trace_can_be_cut_to_hours(tmp_path: Path) -> None:
    rows = "".join(f"{i * 600},{i}\n" for i in range(12))
    trace = resolve_trace(str(write(tmp_path, "timestamp,request_rate\n" + rows)), seed=1, hours=1)
    assert [p.request_rate for p in trace.points] == [0, 1, 2, 3, 4, 5]


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        resolve_trace(str(tmp_path / "nope.csv"), seed=1, hours=None)


def test_new_synthetic_families_have_their_shapes() -> None:
    # on/off: two levels, and gaps of very different lengths (heavy-tailed)
    onoff = [p.request_rate for p in traces.onoff(seed=3).points]
    quiet = [r < 3 for r in onoff]
    gaps, run = [], 0
    for q in quiet:
        if q:
            run += 1
        elif run:
            gaps.append(run)
            run = 0
    assert sum(quiet) > 0.2 * len(onoff) and max(onoff) > 8
    assert max(gaps) >= 4 * min(gaps)
    # flash crowds: most minutes at the base, a few at several times it, reached within a minute
    flash = [p.request_rate for p in traces.flash(seed=3).points]
    median = sorted(flash)[len(flash) // 2]
    assert max(flash) > 3 * median
    jumps = [b - a for a, b in itertools.pairwise(flash)]
    assert max(jumps) > 2 * median


# -- per-request traces ---------------------------------------------------------------------


def gz(tmp_path: Path, text: str, name: str) -> Path:
    import gzip

    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_a_per_request_csv_is_counted_into_bins_with_its_token_lengths(tmp_path: Path) -> None:
    # Given three requests in the first 10 s and one in the third bin, gzip-compressed
    path = gz(
        tmp_path,
        "arrival_s,input_tokens,output_tokens\n0.5,1000,100\n2,3000,300\n9.9,2000,200\n25,500,50\n",
        "hour.csv.gz",
    )
    # When it is loaded
    trace = load_trace_file(path)
    # Then each 10-s bin holds its rate and its requests' mean lengths; an empty bin has rate 0
    assert trace.name == "hour"
    assert [p.request_rate for p in trace.points] == [0.3, 0.0, 0.1]
    assert (trace.points[0].input_tokens, trace.points[0].output_tokens) == (2000, 200)
    assert trace.points[1].input_tokens is None
    assert (trace.points[2].input_tokens, trace.points[2].output_tokens) == (500, 50)
    assert trace.duration_s == 30


def test_mooncake_json_lines_are_a_per_request_trace(tmp_path: Path) -> None:
    lines = [
        {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1]},
        {"timestamp": 12_000, "input_length": 100, "output_length": 20, "hash_ids": [2]},
    ]
    path = write(tmp_path, "\n".join(json.dumps(r) for r in lines) + "\n", "mooncake.jsonl")
    trace = load_trace_file(path)
    assert [p.request_rate for p in trace.points] == [0.1, 0.1]
    assert trace.points[0].input_tokens == 6758 and trace.points[1].output_tokens == 20


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "a.csv",
            "arrival_s,input_tokens,output_tokens\n0,10,1\n1,ten,1\n",
            "line 3, column input_tokens: 'ten'",
        ),
        (
            "a.csv",
            "arrival_s,input_tokens,output_tokens\n-1,10,1\n",
            "line 2, column arrival_s: '-1' must be",
        ),
        (
            "a.csv",
            "arrival_s,input_tokens,output_tokens\n0,0,1\n",
            "column input_tokens: '0' must be a whole",
        ),
        ("a.csv", "arrival_s,input_tokens\n0,10\n", "line 1: a per-request CSV has the header"),
        ("a.csv", "arrival_s,input_tokens,output_tokens\n", "no requests"),
        ("a.jsonl", '{"timestamp": 0, "input_length": 5}\n', "line 1: missing field(s) output_length"),
        (
            "a.jsonl",
            '{"timestamp": 0, "input_length": 5, "output_length": 1}\n[1]\n',
            "line 2: expected an object",
        ),
        ("a.jsonl", "{oops\n", "line 1: not valid JSON"),
    ],
)
def test_a_bad_per_request_file_names_its_line_and_field(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    with pytest.raises(TraceError) as err:
        load_trace_file(write(tmp_path, text, name))
    assert expected in str(err.value)


def test_scale_to_capacity_puts_the_busiest_five_minutes_at_the_fraction(tmp_path: Path) -> None:
    from dynamo_ecs_cli.replay.model import ModelParams

    # Given a per-request trace whose busiest five minutes ask for more than the maxima serve
    rows = "".join(f"{i * 0.05:.2f},2000,200\n" for i in range(12_000))  # 20/s, twice the default input
    trace = load_trace_file(write(tmp_path, "arrival_s,input_tokens,output_tokens\n" + rows, "busy.csv"))
    params, config = ModelParams(), DeploymentConfig()
    before = traces.peak_load(trace, params, config)
    # When it is scaled to 80 % of the capacity
    scaled = traces.scale_to_capacity(trace, params, config, 0.8)
    # Then its peak is 80 %, its lengths and times are kept, and only the rate changed
    assert before > 1
    assert traces.peak_load(scaled, params, config) == pytest.approx(0.8)
    assert [p.at for p in scaled.points] == [p.at for p in trace.points]
    assert scaled.points[3].input_tokens == 2000
    assert scaled.points[3].request_rate == pytest.approx(20 * 0.8 / before)
    with pytest.raises(TraceError, match="fraction of the capacity"):
        traces.scale_to_capacity(trace, params, config, 0)


def test_the_model_at_a_trace_s_lengths_serves_the_same_requests_per_second() -> None:
    from dynamo_ecs_cli.replay.model import ModelParams

    trace = traces.Trace(
        "long",
        (traces.TracePoint(0, 2.0, 12_000, 300), traces.TracePoint(10, 1.0, 6_000, 600)),
    )
    params = ModelParams()
    fitted = traces.at_trace_lengths(params, trace)
    assert fitted.input_tokens == pytest.approx(10_000) and fitted.output_tokens == pytest.approx(400)
    for role in ("frontend", "prefill"):
        assert fitted.capacity_at_sla(role, 500, 50) == pytest.approx(params.capacity_at_sla(role, 500, 50))
    # A request twice the mean input costs twice the prefill time
    assert fitted.replica_rps("prefill", 20_000, 400) == pytest.approx(
        fitted.replica_rps("prefill", 10_000, 400) / 2
    )
