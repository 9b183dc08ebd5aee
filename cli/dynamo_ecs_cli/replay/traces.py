"""Load traces: the request rate over time, from a CSV file, a CloudWatch export or a generator.

A trace is a list of points; each point's rate (and token lengths) holds until the next
point (step-hold), and the last point holds for one median spacing. Input and output
lengths are optional: a point without them uses the model's defaults.

CSV: a header row with ``timestamp`` and ``request_rate`` (requests per second) and
optionally ``input_tokens`` and ``output_tokens``; timestamps in epoch seconds or ISO 8601,
strictly increasing. Any bad row stops the load with an error naming its line and column.

CloudWatch: the JSON that ``aws cloudwatch get-metric-data`` prints for the frontend's
``RequestRate`` (`export_command` writes the command; docs/replay.md explains it).
"""

from __future__ import annotations

import csv
import json
import math
import random
import shlex
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.scaling.metrics_reader import request_rate_stat

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


def load_trace_file(path: Path) -> Trace:
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    return load_cloudwatch(path) if path.suffix.lower() == ".json" else load_csv(path)


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


SYNTHETIC: dict[str, Callable[..., Trace]] = {
    "diurnal": diurnal,
    "bursty": bursty,
    "step": step,
    "ramp": ramp,
}
DEFAULT_HOURS = {"diurnal": 24.0, "bursty": 6.0, "step": 6.0, "ramp": 6.0}


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
