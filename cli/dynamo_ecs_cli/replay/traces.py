"""Load traces: the request rate over time, from a CSV file, a CloudWatch export or a generator.

A trace is a list of points; each point's rate (and token lengths) holds until the next
point (step-hold), and the last point holds for one median spacing. Input and output
lengths are optional: a point without them uses the model's defaults.

CSV: a header row with ``timestamp`` and ``request_rate`` (requests per second) and
optionally ``input_tokens`` and ``output_tokens``; timestamps in epoch seconds or ISO 8601,
strictly increasing. Any bad row stops the load with an error naming its line and column.

CloudWatch: the JSON that ``aws cloudwatch get-metric-data`` prints for the frontend's
``RequestRate`` (`export_command` writes the command; docs/replay.md explains it).

Per-request traces (`load_requests`): one row per request, its arrival and its input and
output tokens, as a CSV with the header ``arrival_s,input_tokens,output_tokens`` or as JSON
lines in Mooncake's format (``{"timestamp": ms, "input_length": n, "output_length": n}``);
either may be gzip-compressed (``.gz``). The requests are counted into ``REQUEST_BIN_S`` bins:
a point's rate is the bin's arrivals per second and its lengths the bin's mean lengths, so the
tokens the trace asks for per second (prefill and decode) are the requests' own.
`scale_to_capacity` scales a trace's rate so that its busiest five minutes ask for a chosen
fraction of what the services' maxima serve within the SLA.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import random
import shlex
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.scaling.metrics_reader import request_rate_stat
from dynamo_ecs_cli.replay.model import ModelParams

# Synthetic traces start here (a whole hour, UTC), so runs are comparable and reproducible.
SYNTHETIC_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SYNTHETIC_STEP_S = 60.0


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the file, line and column."""


@dataclass(frozen=True)
class TracePoint:
    at: float  # epoch seconds
    request_rate: float  # requests per second
    input_tokens: float | None = None
    output_tokens: float | None = None


@dataclass(frozen=True)
class Trace:
    name: str
    points: tuple[TracePoint, ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise TraceError(f"{self.name}: the trace has no points")

    @property
    def start(self) -> float:
        return self.points[0].at

    @property
    def step_s(self) -> float:
        """The median spacing of the points (the last point holds this long)."""
        if len(self.points) < 2:
            return SYNTHETIC_STEP_S
        return statistics.median(b.at - a.at for a, b in zip(self.points, self.points[1:], strict=False))

    @property
    def end(self) -> float:
        return self.points[-1].at + self.step_s

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def cursor(self) -> TraceCursor:
        return TraceCursor(self)


class TraceCursor:
    """Reads a trace forward in time in O(1) per step (the replay never goes back)."""

    def __init__(self, trace: Trace) -> None:
        self._points = trace.points
        self._index = 0

    def at(self, t: float) -> TracePoint:
        while self._index + 1 < len(self._points) and self._points[self._index + 1].at <= t:
            self._index += 1
        return self._points[self._index]


# -- CSV ----------------------------------------------------------------------------------

_REQUIRED = ("timestamp", "request_rate")
_OPTIONAL = ("input_tokens", "output_tokens")


def _parse_time(raw: str) -> float:
    text = raw.strip()
    try:
        return float(text)
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _number(raw: str, where: str, column: str, positive: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise TraceError(f"{where}, column {column}: {raw.strip()!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise TraceError(f"{where}, column {column}: {raw.strip()!r} must be a finite number {bound}")
    return value


def load_csv(path: Path) -> Trace:
    """A trace from a CSV file, or `TraceError` naming the first bad line and column."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise TraceError(f"{path}: empty file; expected a header row {','.join(_REQUIRED)}") from None
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise TraceError(f"{path} line 1: missing column(s) {', '.join(missing)} in the header")
        unknown = [c for c in header if c not in _REQUIRED + _OPTIONAL]
        if unknown:
            raise TraceError(
                f"{path} line 1: unknown column(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(_REQUIRED + _OPTIONAL)}"
            )
        index = {name: header.index(name) for name in header}
        points: list[TracePoint] = []
        for row in reader:
            line = reader.line_num
            where = f"{path} line {line}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise TraceError(f"{where}: {len(row)} fields, the header has {len(header)}")
            try:
                at = _parse_time(row[index["timestamp"]])
            except ValueError:
                raise TraceError(
                    f"{where}, column timestamp: {row[index['timestamp']].strip()!r} is neither "
                    "epoch seconds nor ISO 8601"
                ) from None
            if points and at <= points[-1].at:
                raise TraceError(f"{where}, column timestamp: not after the previous row's timestamp")
            rate = _number(row[index["request_rate"]], where, "request_rate", positive=False)
            lengths: dict[str, float | None] = {}
            for column in _OPTIONAL:
                raw = row[index[column]] if column in index else ""
                lengths[column] = _number(raw, where, column, positive=True) if raw.strip() else None
            points.append(TracePoint(at, rate, lengths["input_tokens"], lengths["output_tokens"]))
    if not points:
        raise TraceError(f"{path}: no data rows after the header")
    return Trace(path.stem, tuple(points))


# -- CloudWatch export --------------------------------------------------------------------

EXPORT_QUERY_ID = "rate"


def export_command(config: DeploymentConfig, start: str, end: str, period_s: int = 60) -> str:
    """The AWS CLI command that exports the frontend's request rate for `load_cloudwatch`."""
    query = [{"Id": EXPORT_QUERY_ID, "MetricStat": request_rate_stat(config, period_s)}]
    return " ".join(
        [
            "aws cloudwatch get-metric-data",
            "--metric-data-queries",
            shlex.quote(json.dumps(query, separators=(",", ":"))),
            "--start-time",
            shlex.quote(start),
            "--end-time",
            shlex.quote(end),
            "--scan-by TimestampAscending --output json",
        ]
    )


def load_cloudwatch(path: Path) -> Trace:
    """A trace from the JSON output of `export_command` (pages of one query are merged)."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TraceError(
            f"{path} line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    results = data.get("MetricDataResults") if isinstance(data, dict) else None
    if not isinstance(results, list) or not results:
        raise TraceError(f"{path}: no MetricDataResults; is this the output of get-metric-data?")
    ids = {r.get("Id") for r in results if isinstance(r, dict)}
    wanted = EXPORT_QUERY_ID if EXPORT_QUERY_ID in ids else next(iter(ids))
    samples: dict[float, float] = {}
    for result in results:
        if not isinstance(result, dict) or result.get("Id") != wanted:
            continue
        stamps, values = result.get("Timestamps", []), result.get("Values", [])
        if len(stamps) != len(values):
            raise TraceError(
                f"{path}: query {wanted!r} has {len(stamps)} timestamps and {len(values)} values"
            )
        for i, (stamp, value) in enumerate(zip(stamps, values, strict=True)):
            try:
                at = _parse_time(str(stamp))
            except ValueError:
                raise TraceError(f"{path}: Timestamps[{i}] {stamp!r} is not ISO 8601") from None
            samples[at] = _number(str(value), f"{path}: Values[{i}]", "request_rate", positive=False)
    if not samples:
        raise TraceError(f"{path}: query {wanted!r} has no datapoints")
    return Trace(path.stem, tuple(TracePoint(at, samples[at]) for at in sorted(samples)))


# -- per-request traces ------------------------------------------------------------------

# Requests are counted into bins of this many seconds (the model's default tick).
REQUEST_BIN_S = 10.0
REQUEST_HEADER = ("arrival_s", "input_tokens", "output_tokens")
# Where a per-request trace without absolute times starts (a whole hour, as the synthetic ones).
REQUESTS_START = SYNTHETIC_START


@dataclass(frozen=True)
class Request:
    arrival_s: float  # seconds from the trace's start
    input_tokens: int
    output_tokens: int


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _base_suffix(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return Path(name).suffix


def _tokens(raw: Any, where: str, field: str) -> int:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise TraceError(f"{where}, {field}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise TraceError(f"{where}, {field}: {raw!r} must be a whole number of tokens >= 1")
    return int(value)


def _arrival(raw: Any, where: str, field: str, scale: float) -> float:
    try:
        value = float(raw) * scale
    except (TypeError, ValueError):
        raise TraceError(f"{where}, {field}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"{where}, {field}: {raw!r} must be a finite number >= 0")
    return value


def _read_request_csv(path: Path, handle: IO[str]) -> list[Request]:
    reader = csv.reader(handle)
    header = [h.strip() for h in next(reader, [])]
    if tuple(header) != REQUEST_HEADER:
        raise TraceError(f"{path} line 1: a per-request CSV has the header {','.join(REQUEST_HEADER)}")
    requests: list[Request] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path} line {reader.line_num}"
        if len(row) != len(REQUEST_HEADER):
            raise TraceError(f"{where}: {len(row)} fields, the header has {len(REQUEST_HEADER)}")
        requests.append(
            Request(
                _arrival(row[0], where, "column arrival_s", 1.0),
                _tokens(row[1], where, "column input_tokens"),
                _tokens(row[2], where, "column output_tokens"),
            )
        )
    return requests


def _read_request_jsonl(path: Path, handle: IO[str]) -> list[Request]:
    requests: list[Request] = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise TraceError(f"{where}: expected an object with timestamp, input_length, output_length")
        missing = [k for k in ("timestamp", "input_length", "output_length") if k not in row]
        if missing:
            raise TraceError(f"{where}: missing field(s) {', '.join(missing)} (timestamp is in ms)")
        requests.append(
            Request(
                _arrival(row["timestamp"], where, "field timestamp", 1e-3),
                _tokens(row["input_length"], where, "field input_length"),
                _tokens(row["output_length"], where, "field output_length"),
            )
        )
    return requests


def read_requests(path: Path) -> list[Request]:
    """The requests of a per-request CSV or JSON-lines file (optionally gzip), by arrival."""
    suffix = _base_suffix(path)
    try:
        with _open_text(path) as handle:
            if suffix == ".jsonl":
                requests = _read_request_jsonl(path, handle)
            else:
                requests = _read_request_csv(path, handle)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot be read ({exc})") from None
    if not requests:
        raise TraceError(f"{path}: no requests")
    requests.sort(key=lambda r: r.arrival_s)
    return requests


def bin_requests(
    name: str, requests: Sequence[Request], bin_s: float = REQUEST_BIN_S, start: float = REQUESTS_START
) -> Trace:
    """Count requests into ``bin_s`` bins: each point's rate and the bin's mean lengths.

    The bins start at the first arrival; a bin without requests has rate 0 (and no lengths).
    """
    first = requests[0].arrival_s
    count = int((requests[-1].arrival_s - first) // bin_s) + 1
    n = [0] * count
    inp = [0.0] * count
    out = [0.0] * count
    for r in requests:
        i = int((r.arrival_s - first) // bin_s)
        n[i] += 1
        inp[i] += r.input_tokens
        out[i] += r.output_tokens
    points = tuple(
        TracePoint(
            start + i * bin_s,
            n[i] / bin_s,
            inp[i] / n[i] if n[i] else None,
            out[i] / n[i] if n[i] else None,
        )
        for i in range(count)
    )
    return Trace(name, points)


def _is_request_file(path: Path) -> bool:
    suffix = _base_suffix(path)
    if suffix == ".jsonl":
        return True
    if suffix != ".csv":
        return False
    with _open_text(path) as handle:
        first = handle.readline()
    return first.strip().split(",")[:1] == [REQUEST_HEADER[0]]


def _stem(path: Path) -> str:
    name = path.name.removesuffix(".gz").removesuffix(".GZ")
    return Path(name).stem


def load_trace_file(path: Path) -> Trace:
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    try:
        per_request = _is_request_file(path)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot be read ({exc})") from None
    if per_request:
        return bin_requests(_stem(path), read_requests(path))
    return load_cloudwatch(path) if path.suffix.lower() == ".json" else load_csv(path)


# -- fitting a trace to the stack --------------------------------------------------------

# The busiest window the scaling compares with the services' capacity.
PEAK_WINDOW_S = 300.0


def mean_lengths(trace: Trace, params: ModelParams) -> tuple[float, float]:
    """The request-weighted mean input and output tokens (the model's defaults where unset)."""
    n = sum(p.request_rate for p in trace.points)
    if n <= 0:
        return params.input_tokens, params.output_tokens
    inp = sum(p.request_rate * (p.input_tokens or params.input_tokens) for p in trace.points) / n
    out = sum(p.request_rate * (p.output_tokens or params.output_tokens) for p in trace.points) / n
    return inp, out


def at_trace_lengths(params: ModelParams, trace: Trace) -> ModelParams:
    """The model profiled at the trace's mean lengths.

    A profile measures a replica at the lengths the deployment serves (``dynamo-ecs profile
    --input-tokens --output-tokens``). This sets the model's lengths to the trace's means and
    scales the replicas' token throughputs with them, so that one replica serves at the mean
    lengths the requests per second it serves at the defaults, with the same base latencies.
    Requests longer or shorter than the mean still cost in proportion to their tokens.
    """
    inp, out = mean_lengths(trace, params)
    return params.model_copy(
        update={
            "input_tokens": inp,
            "output_tokens": out,
            "prefill_tokens_per_s": params.prefill_tokens_per_s * inp / params.input_tokens,
            "decode_tokens_per_s": params.decode_tokens_per_s * out / params.output_tokens,
        }
    )


def peak_load(trace: Trace, params: ModelParams, config: DeploymentConfig) -> float:
    """The busiest ``PEAK_WINDOW_S`` of the trace as a fraction of what the maxima serve.

    Per service, the window's tokens per second (prefill: input, the frontend's decode:
    output) against ``max`` replicas at their capacity within the SLA; the larger of the two.
    """
    ttft = config.frontend.targets.ttft_ms or 500.0
    itl = config.frontend.targets.itl_ms or 2 * params.base_itl_ms
    capacity = {
        "prefill": config.prefill.max * params.capacity_at_sla("prefill", ttft, itl) * params.input_tokens,
        "frontend": config.frontend.max
        * params.capacity_at_sla("frontend", ttft, itl)
        * params.output_tokens,
    }
    step = trace.step_s
    width = max(round(PEAK_WINDOW_S / step), 1)
    prefill = [p.request_rate * (p.input_tokens or params.input_tokens) for p in trace.points]
    decode = [p.request_rate * (p.output_tokens or params.output_tokens) for p in trace.points]

    def busiest(series: list[float]) -> float:
        total = sum(series[:width])
        best = total
        for i in range(width, len(series)):
            total += series[i] - series[i - width]
            best = max(best, total)
        return best / min(width, len(series))

    return max(busiest(prefill) / capacity["prefill"], busiest(decode) / capacity["frontend"])


def scale_to_capacity(trace: Trace, params: ModelParams, config: DeploymentConfig, fraction: float) -> Trace:
    """The trace with its rate scaled so its busiest five minutes ask ``fraction`` of the maxima.

    Lengths and the shape in time are kept; only the number of requests per second changes.
    """
    if not 0 < fraction <= 2:
        raise TraceError(f"scale to {fraction!r}: the fraction of the capacity must be in (0, 2]")
    peak = peak_load(trace, params, config)
    if peak <= 0:
        raise TraceError(f"{trace.name}: no requests to scale")
    factor = fraction / peak
    points = tuple(
        TracePoint(p.at, p.request_rate * factor, p.input_tokens, p.output_tokens) for p in trace.points
    )
    return Trace(f"{trace.name}-at{round(fraction * 100)}", points)


# -- synthetic ----------------------------------------------------------------------------


def _synthetic(
    name: str, hours: float, seed: int, shape: Callable[[float, random.Random], float], noise: float = 0.05
) -> Trace:
    rng = random.Random(f"{name}:{seed}")
    count = max(int(hours * 3600 / SYNTHETIC_STEP_S), 1)
    points = []
    for i in range(count):
        fraction = i / count
        rate = shape(fraction, rng) * (1.0 + rng.gauss(0.0, noise))
        points.append(TracePoint(SYNTHETIC_START + i * SYNTHETIC_STEP_S, round(max(rate, 0.0), 3)))
    return Trace(f"{name}-seed{seed}", tuple(points))


def diurnal(hours: float = 24.0, seed: int = 1, low: float = 3.0, peak: float = 22.0) -> Trace:
    """One day's cycle per 24 h: trough at 04:00, peak at 16:00."""

    def shape(fraction: float, _: random.Random) -> float:
        hour = fraction * hours
        return low + (peak - low) * (1 - math.cos(2 * math.pi * (hour - 4.0) / 24.0)) / 2

    return _synthetic("diurnal", hours, seed, shape)


def bursty(hours: float = 6.0, seed: int = 1, base: float = 6.0, peak: float = 22.0) -> Trace:
    """A steady base with flash crowds: about one an hour, rising within a minute or two,
    lasting 10 to 30 minutes at 60 to 100 % of ``peak``, then decaying."""
    rng = random.Random(f"bursty-crowds:{seed}")
    total_min = hours * 60
    crowds: list[tuple[float, float, float]] = []  # (start minute, length minutes, height)
    minute = rng.uniform(20, 50)
    while minute < total_min - 20:
        crowds.append((minute, rng.uniform(10, 30), rng.uniform(0.6, 1.0) * (peak - base)))
        minute += rng.uniform(45, 90)

    def shape(fraction: float, _: random.Random) -> float:
        now = fraction * total_min
        extra = 0.0
        for start, length, height in crowds:
            if start <= now < start + length:
                extra = max(extra, height * min((now - start) / 2.0, 1.0))
            elif start + length <= now < start + length + 10:
                extra = max(extra, height * math.exp(-(now - start - length) / 3.0))
        return base + extra

    return _synthetic("bursty", hours, seed, shape)


def step(hours: float = 6.0, seed: int = 1, low: float = 6.0, high: float = 20.0) -> Trace:
    """Low for the first third, high for the second, low again for the last."""
    return _synthetic("step", hours, seed, lambda f, _: high if 1 / 3 <= f < 2 / 3 else low)


def ramp(hours: float = 6.0, seed: int = 1, low: float = 2.0, high: float = 24.0) -> Trace:
    """A linear rise from ``low`` to ``high`` over the first 80 %, then flat."""
    return _synthetic("ramp", hours, seed, lambda f, _: low + (high - low) * min(f / 0.8, 1.0))


def onoff(hours: float = 6.0, seed: int = 1, low: float = 1.0, high: float = 14.0) -> Trace:
    """On/off traffic with heavy-tailed gaps: busy spells of 3 to 15 minutes at about ``high``,
    separated by quiet gaps at ``low`` whose lengths are Pareto (shape 1.2, at least 2 minutes,
    at most an hour): most gaps are short, a few are very long (batch jobs, office hours)."""
    rng = random.Random(f"onoff-spells:{seed}")
    total_min = hours * 60
    spells: list[tuple[float, float, float]] = []  # (start minute, length minutes, height)
    minute = min(2.0 * rng.paretovariate(1.2), 60.0)
    while minute < total_min:
        length = rng.uniform(3, 15)
        spells.append((minute, length, rng.uniform(0.7, 1.0) * high))
        minute += length + min(2.0 * rng.paretovariate(1.2), 60.0)

    def shape(fraction: float, _: random.Random) -> float:
        now = fraction * total_min
        return max([h for s, n, h in spells if s <= now < s + n], default=low)

    return _synthetic("onoff", hours, seed, shape)


def flash(hours: float = 6.0, seed: int = 1, base: float = 4.0, peak: float = 22.0) -> Trace:
    """Flash crowds: a low base, and every 40 to 120 minutes a crowd that reaches 70 to 100 %
    of ``peak`` within a minute, holds 3 to 10 minutes and is gone within two."""
    rng = random.Random(f"flash-crowds:{seed}")
    total_min = hours * 60
    crowds: list[tuple[float, float, float]] = []
    minute = rng.uniform(15, 60)
    while minute < total_min - 10:
        crowds.append((minute, rng.uniform(3, 10), rng.uniform(0.7, 1.0) * (peak - base)))
        minute += rng.uniform(40, 120)

    def shape(fraction: float, _: random.Random) -> float:
        now = fraction * total_min
        extra = 0.0
        for start, length, height in crowds:
            if start <= now < start + length:
                extra = max(extra, height)
            elif start + length <= now < start + length + 2:
                extra = max(extra, height * (1 - (now - start - length) / 2))
        return base + extra

    return _synthetic("flash", hours, seed, shape)


SYNTHETIC: dict[str, Callable[..., Trace]] = {
    "diurnal": diurnal,
    "bursty": bursty,
    "step": step,
    "ramp": ramp,
    "onoff": onoff,
    "flash": flash,
}
DEFAULT_HOURS = {"diurnal": 24.0, "bursty": 6.0, "step": 6.0, "ramp": 6.0, "onoff": 6.0, "flash": 6.0}


def constant(rate: float, hours: float = 1.0) -> Trace:
    """A flat trace without noise (tests and sanity checks)."""
    count = max(int(hours * 3600 / SYNTHETIC_STEP_S), 1)
    points = tuple(TracePoint(SYNTHETIC_START + i * SYNTHETIC_STEP_S, rate) for i in range(count))
    return Trace(f"constant-{rate:g}", points)


def resolve_trace(source: str, seed: int, hours: float | None) -> Trace:
    """A built-in trace by name, or a CSV / CloudWatch JSON file by path."""
    if source in SYNTHETIC:
        return SYNTHETIC[source](hours=hours or DEFAULT_HOURS[source], seed=seed)
    trace = load_trace_file(Path(source))
    if hours is not None:
        cut = trace.start + hours * 3600
        kept = tuple(p for p in trace.points if p.at < cut)
        trace = Trace(trace.name, kept or trace.points[:1])
    return trace


def names() -> Sequence[str]:
    return tuple(SYNTHETIC)
