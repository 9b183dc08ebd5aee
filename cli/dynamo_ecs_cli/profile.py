"""``dynamo-ecs profile``: what one replica serves within the SLA, measured, written to a file.

An open-loop load of streamed chat completions at a few request rates, each for ``step_s``
seconds, against a Dynamo frontend with **one** frontend (decode) task and **one** prefill
task behind it: a stack scaled to its minimums, a test stack, or the local real-Dynamo run
(`bench/bench_profile.py`). Streaming shows each request's time to the first token (TTFT)
and its inter-token latency (ITL). Per rate the means are kept; the capacity is where the
mean crosses the target (interpolated between the two rates around it):

- prefill: requests/s at the TTFT target;
- frontend (decode): requests/s at the ITL target, or, if no rate tried reaches it, the
  highest rate tried (``frontend_is_lower_bound``).

The file (JSON, `Profile`) is what the stack's ``FrontendCapacityRps`` / ``PrefillCapacityRps``
take (and, times the profile's output / prompt length, ``FrontendCapacityTokensPerS`` /
``PrefillCapacityTokensPerS``), and what ``dynamo-ecs replay --profile FILE`` calibrates its model with
(`model_knobs`), so the replay's per-replica throughput is measured, not guessed. Measured
against Dynamo's mocker engine, the number is the mocker's at its ``--speedup-ratio`` on the
machine that ran it, not a GPU's: measure on your GPUs for the figure to deploy.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FORMAT = 1
MAX_IN_FLIGHT = 256
MAX_STEP_S = 120.0
# A request sent this much after its time counts as late; more than this share late: refused.
LATE_S = 0.25
LATE_FRACTION = 0.05


class ProfileError(ValueError):
    """A profile file or a profile run that cannot be used; the message names the field and the fix."""


class RatePoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_rps: float = Field(gt=0)  # offered
    completed_rps: float = Field(ge=0)
    errors: int = Field(ge=0)
    ttft_mean_ms: float = Field(gt=0)
    itl_mean_ms: float = Field(ge=0)


class Profile(BaseModel):
    """A profile file's content. ``points`` are the measurements; the rest is derived from them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT
    source: str = Field(min_length=1)  # what was measured: endpoint, engine, when
    input_tokens: float = Field(gt=0)
    output_tokens: float = Field(gt=0)
    ttft_target_ms: float = Field(gt=0)
    itl_target_ms: float = Field(gt=0)
    points: list[RatePoint] = Field(min_length=2)
    prefill_capacity_rps: float = Field(gt=0)
    frontend_capacity_rps: float = Field(gt=0)
    frontend_is_lower_bound: bool = False

    @model_validator(mode="after")
    def _check(self) -> Profile:
        if self.format != FORMAT:
            raise ValueError(f"format {self.format} is not {FORMAT}: measure again with this dynamo-ecs")
        rates = [p.rate_rps for p in self.points]
        if rates != sorted(rates) or len(set(rates)) != len(rates):
            raise ValueError("points: rate_rps must be strictly increasing")
        if self.points[0].ttft_mean_ms >= self.ttft_target_ms:
            raise ValueError(
                "points: the lowest rate's TTFT is already at or above the target; "
                "start the profile at a lower rate (--rates)"
            )
        return self

    @property
    def prefill_capacity_tokens_per_s(self) -> float:
        """Input tokens/s one prefill replica processes within the TTFT target, at the profile's
        prompt length (the stack's ``PrefillCapacityTokensPerS``)."""
        return round(self.prefill_capacity_rps * self.input_tokens, 1)

    @property
    def frontend_capacity_tokens_per_s(self) -> float:
        """Output tokens/s one frontend (decode) replica generates within the ITL target, at the
        profile's output length (the stack's ``FrontendCapacityTokensPerS``)."""
        return round(self.frontend_capacity_rps * self.output_tokens, 1)

    @property
    def base_ttft_ms(self) -> float:
        return self.points[0].ttft_mean_ms

    @property
    def base_itl_ms(self) -> float:
        return self.points[0].itl_mean_ms


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file, or raise `ProfileError` naming the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such file (write one with dynamo-ecs profile)") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'profile'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise ProfileError(f"{path}: {problems}") from None


# -- the model's knobs from a profile -------------------------------------------------------


def _utilization_at(target: float, base: float, factor: float) -> float:
    """rho where the model's latency ``base * (1 + k rho / (1 - rho))`` reaches ``target``."""
    x = max(target / base - 1.0, 0.0)
    return x / (factor + x) if factor + x > 0 else 1.0


def model_knobs(profile: Profile, ttft_load_factor: float, itl_load_factor: float) -> dict[str, float]:
    """The replay model's capacity and latency knobs that reproduce the profile's capacities at
    its targets: base latencies from the lightest rate, throughput from the capacity."""
    rho_prefill = _utilization_at(profile.ttft_target_ms, profile.base_ttft_ms, ttft_load_factor)
    rho_decode = _utilization_at(profile.itl_target_ms, max(profile.base_itl_ms, 1e-3), itl_load_factor)
    prefill_rps = profile.prefill_capacity_rps / max(rho_prefill, 1e-6)
    decode_rps = profile.frontend_capacity_rps / max(rho_decode, 1e-6)
    return {
        "input_tokens": profile.input_tokens,
        "output_tokens": profile.output_tokens,
        "base_ttft_ms": profile.base_ttft_ms,
        "base_itl_ms": max(profile.base_itl_ms, 1e-3),
        "prefill_tokens_per_s": prefill_rps * profile.input_tokens,
        "decode_tokens_per_s": decode_rps * profile.output_tokens,
    }


# -- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamResult:
    ok: bool
    ttft_s: float
    itl_s: float
    tokens: int


def stream_chat(base_url: str, model: str, prompt: str, max_tokens: int, timeout_s: float) -> StreamResult:
    """One streamed chat completion: time to the first content chunk, mean gap after it."""
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "stream": True,
        }
    ).encode()
    if not base_url.startswith(("http://", "https://")):
        raise ProfileError(f"--url {base_url!r}: an http:// or https:// address of a Dynamo frontend")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        f"{base_url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    started = time.monotonic()
    first: float | None = None
    last = started
    tokens = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            for raw in response:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                now = time.monotonic()
                first = now if first is None else first
                last = now
                tokens += 1
    except (urllib.error.URLError, OSError, ValueError):
        return StreamResult(False, time.monotonic() - started, 0.0, tokens)
    if first is None:
        return StreamResult(False, time.monotonic() - started, 0.0, 0)
    itl = (last - first) / (tokens - 1) if tokens > 1 else 0.0
    return StreamResult(True, first - started, itl, tokens)


def measure_rate(
    base_url: str, model: str, rate_rps: float, step_s: float, prompt: str, max_tokens: int, timeout_s: float
) -> RatePoint:
    """An open-loop load at ``rate_rps`` for ``step_s``; the means of what completed."""
    results: list[StreamResult] = []
    late = 0
    lock = threading.Lock()

    def one(due: float) -> None:
        nonlocal late
        if time.monotonic() - due > LATE_S:
            with lock:
                late += 1
        result = stream_chat(base_url, model, prompt, max_tokens, timeout_s)
        with lock:
            results.append(result)

    step_s = min(step_s, MAX_STEP_S)
    count = max(int(rate_rps * step_s), 1)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT) as pool:
        for i in range(count):
            due = started + i / rate_rps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, due)
    elapsed = max(time.monotonic() - started, step_s)
    if late > LATE_FRACTION * count:
        # An open loop that cannot open: the latencies would leave out the client's own wait.
        raise ProfileError(
            f"at {rate_rps:g} requests/s {late} of {count} requests left more than {LATE_S:g} s late "
            f"(more than {MAX_IN_FLIGHT} in flight): lower --output-tokens or the highest --rates"
        )
    ok = [r for r in results if r.ok]
    if not ok:
        raise ProfileError(
            f"{base_url}: no request completed at {rate_rps:g} requests/s (is it serving {model}?)"
        )
    return RatePoint(
        rate_rps=rate_rps,
        completed_rps=round(len(ok) / elapsed, 3),
        errors=len(results) - len(ok),
        ttft_mean_ms=round(1000 * sum(r.ttft_s for r in ok) / len(ok), 2),
        itl_mean_ms=round(1000 * sum(r.itl_s for r in ok) / len(ok), 3),
    )


def crossing(points: Sequence[RatePoint], value: str, target: float) -> float | None:
    """The rate where the mean ``value`` reaches ``target`` (linear between the rates around it)."""
    previous: RatePoint | None = None
    for point in points:
        v = float(getattr(point, value))
        if v >= target or point.errors > 0:
            if previous is None:
                return None
            pv = float(getattr(previous, value))
            if point.errors > 0 or v <= pv:
                return previous.rate_rps
            return previous.rate_rps + (point.rate_rps - previous.rate_rps) * (target - pv) / (v - pv)
        previous = point
    return None


def build_profile(
    points: list[RatePoint],
    source: str,
    input_tokens: float,
    output_tokens: float,
    ttft_target_ms: float,
    itl_target_ms: float,
) -> Profile:
    prefill = crossing(points, "ttft_mean_ms", ttft_target_ms)
    if prefill is None:
        if points[0].ttft_mean_ms >= ttft_target_ms:
            raise ProfileError(
                "the lowest rate already misses the TTFT target: start at a lower rate (--rates)"
            )
        raise ProfileError(
            f"no rate up to {points[-1].rate_rps:g} requests/s reached the TTFT target: "
            "add higher rates (--rates)"
        )
    if points[0].itl_mean_ms >= itl_target_ms:
        raise ProfileError(
            f"the lowest rate's mean ITL ({points[0].itl_mean_ms:g} ms) is already at or above --itl-ms "
            f"({itl_target_ms:g}): the decode worker misses the ITL target at any load; raise --itl-ms "
            "or speed the engine up (Dynamo's mocker: --speedup-ratio)"
        )
    frontend = crossing(points, "itl_mean_ms", itl_target_ms)
    return Profile(
        source=source,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        ttft_target_ms=ttft_target_ms,
        itl_target_ms=itl_target_ms,
        points=points,
        prefill_capacity_rps=round(prefill, 3),
        frontend_capacity_rps=round(frontend if frontend is not None else points[-1].rate_rps, 3),
        frontend_is_lower_bound=frontend is None,
    )


WORDS = ("hello", "world", "the", "model", "is", "a", "token")


def prompt_of(words: int) -> str:
    """A prompt of ``words`` words: about that many tokens (exactly, on a word-level tokenizer)."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


def run_profile(
    base_url: str,
    model: str,
    rates: Sequence[float],
    step_s: float,
    input_tokens: int,
    output_tokens: int,
    ttft_target_ms: float,
    itl_target_ms: float,
    source: str,
    timeout_s: float = 30.0,
    on_point: Any = None,
) -> Profile:
    if sorted(rates) != list(rates) or not rates or rates[0] <= 0:
        raise ProfileError("--rates must be increasing and > 0, e.g. 1,2,4,8")
    if not base_url.startswith(("http://", "https://")):
        raise ProfileError(f"--url {base_url!r}: an http:// or https:// address of a Dynamo frontend")
    prompt = prompt_of(input_tokens)
    points: list[RatePoint] = []
    for rate in rates:
        point = measure_rate(base_url, model, rate, step_s, prompt, output_tokens, timeout_s)
        points.append(point)
        if on_point is not None:
            on_point(point)
        if point.ttft_mean_ms >= ttft_target_ms and point.itl_mean_ms >= itl_target_ms:
            break  # both crossings seen: higher rates only queue
    return build_profile(points, source, input_tokens, output_tokens, ttft_target_ms, itl_target_ms)


def write_profile(profile: Profile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile.model_dump(), indent=2) + "\n", encoding="utf-8")
    return path
