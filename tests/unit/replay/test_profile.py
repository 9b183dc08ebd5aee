"""Profiles: measured by streaming against a frontend, validated on load, turned into model knobs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dynamo_ecs_cli.profile import (
    Profile,
    ProfileError,
    RatePoint,
    build_profile,
    crossing,
    load_profile,
    model_knobs,
    run_profile,
    stream_chat,
    write_profile,
)
from dynamo_ecs_cli.replay.cli import model_params
from dynamo_ecs_cli.replay.model import ModelParams


def point(rate: float, ttft: float, itl: float, errors: int = 0) -> RatePoint:
    return RatePoint(rate_rps=rate, completed_rps=rate, errors=errors, ttft_mean_ms=ttft, itl_mean_ms=itl)


POINTS = [point(1, 100, 20), point(2, 200, 30), point(4, 700, 45), point(8, 2000, 70)]


def test_the_capacity_is_where_the_mean_crosses_the_target_between_two_rates() -> None:
    # TTFT 200 ms at 2/s and 700 ms at 4/s: 500 ms is reached at 2 + 2 x 300/500 = 3.2/s
    assert crossing(POINTS, "ttft_mean_ms", 500.0) == pytest.approx(3.2)
    # ITL 45 at 4/s, 70 at 8/s: 50 at 4 + 4 x 5/25 = 4.8/s
    assert crossing(POINTS, "itl_mean_ms", 50.0) == pytest.approx(4.8)
    # errors at a rate mean the rate before is the last good one
    assert crossing([point(1, 100, 20), point(2, 200, 30, errors=3)], "ttft_mean_ms", 500.0) == 1


def test_a_profile_whose_itl_never_reaches_the_target_says_its_frontend_figure_is_a_lower_bound() -> None:
    profile = build_profile(POINTS[:3], "test", 1000, 200, 500.0, 50.0)
    assert profile.prefill_capacity_rps == pytest.approx(3.2)
    assert profile.frontend_capacity_rps == 4 and profile.frontend_is_lower_bound
    # in tokens at the profile's lengths: 1,000-token prompts, 200 tokens out
    assert profile.prefill_capacity_tokens_per_s == pytest.approx(3200)
    assert profile.frontend_capacity_tokens_per_s == pytest.approx(800)


def test_the_models_knobs_from_a_profile_give_back_its_capacities() -> None:
    profile = build_profile(POINTS, "test", 1000, 200, 500.0, 50.0)
    defaults = ModelParams()
    params = ModelParams.model_validate(
        model_knobs(profile, defaults.ttft_load_factor, defaults.itl_load_factor)
    )
    assert params.base_ttft_ms == 100 and params.base_itl_ms == 20
    assert params.capacity_at_sla("prefill", 500.0, 50.0) == pytest.approx(3.2, rel=1e-6)
    assert params.capacity_at_sla("frontend", 500.0, 50.0) == pytest.approx(4.8, rel=1e-6)


def test_the_replay_reads_a_profile_file_and_overrides_still_win(tmp_path: Path) -> None:
    path = write_profile(build_profile(POINTS, "test", 1000, 200, 500.0, 50.0), tmp_path / "p.json")
    params = model_params(["base_ttft_ms=90"], path)
    assert params.base_ttft_ms == 90  # --model beats the profile
    assert params.capacity_at_sla("frontend", 500.0, 50.0) == pytest.approx(4.8, rel=1e-6)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"format": 9}, "format 9 is not 1"),
        (
            {"points": [POINTS[1].model_dump(), POINTS[0].model_dump()]},
            "rate_rps must be strictly increasing",
        ),
        ({"prefill_capacity_rps": 0}, "prefill_capacity_rps: Input should be greater than 0"),
        ({"ttft_target_ms": 50}, "lowest rate's TTFT is already at or above the target"),
        ({"speedup": 2}, "speedup: Extra inputs are not permitted"),
    ],
)
def test_a_bad_profile_file_names_the_field(tmp_path: Path, change: dict[str, object], fragment: str) -> None:
    good = build_profile(POINTS, "test", 1000, 200, 500.0, 50.0).model_dump()
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**good, **change}))
    with pytest.raises(ProfileError, match=r"bad\.json") as caught:
        load_profile(path)
    assert fragment in str(caught.value)


def test_a_missing_or_broken_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "none.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ProfileError, match="not JSON"):
        load_profile(tmp_path / "broken.json")


class _Streaming(BaseHTTPRequestHandler):
    """A frontend stand-in: TTFT 50 ms plus 10 ms per request in flight, then 5 tokens 10 ms apart."""

    in_flight = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        request = json.loads(self.rfile.read(length))
        assert request["stream"] is True
        with self.lock:
            type(self).in_flight += 1
            busy = type(self).in_flight
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        time.sleep(0.05 + 0.01 * busy)
        for _ in range(5):
            self.wfile.write(b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n')
            self.wfile.flush()
            time.sleep(0.01)
        self.wfile.write(b"data: [DONE]\n\n")
        with self.lock:
            type(self).in_flight -= 1

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def frontend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Streaming)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_streamed_completion_shows_its_first_token_and_the_gaps_after(frontend: str) -> None:
    result = stream_chat(frontend, "m", "hello", 5, timeout_s=5)
    assert result.ok and result.tokens == 5
    assert 0.05 <= result.ttft_s < 0.5
    assert 0.005 <= result.itl_s < 0.1


def test_a_profile_run_measures_rising_latency_and_finds_the_crossing(frontend: str) -> None:
    # TTFT grows with requests in flight: a target of 90 ms is crossed between the rates
    profile = run_profile(frontend, "m", [2, 40], 2.0, 10, 5, 90.0, 50.0, "fake frontend")
    assert isinstance(profile, Profile)
    assert [p.rate_rps for p in profile.points] == [2, 40]
    assert profile.points[0].ttft_mean_ms < profile.points[1].ttft_mean_ms
    assert 2 < profile.prefill_capacity_rps < 40


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ProfileError, match="--url"):
        run_profile("file:///etc/passwd", "m", [1, 2], 5.0, 10, 5, 500.0, 50.0, "x")


def test_the_profile_command_writes_the_file_and_says_what_to_deploy(frontend: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dynamo_ecs_cli.main import cli

    out = tmp_path / "profile.json"
    args = ["profile", "--url", frontend, "--model", "m", "--rates", "2,40", "--step", "5"]
    args += ["--input-tokens", "10", "--output-tokens", "5", "--ttft-ms", "90", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "PrefillCapacityRps=" in result.output and f"--profile {out}" in result.output
    profile = load_profile(out)
    assert profile.prefill_capacity_rps > 2
    # and the same capacities in tokens, at the profile's lengths
    assert f"PrefillCapacityTokensPerS={profile.prefill_capacity_tokens_per_s:g}" in result.output
    assert f"FrontendCapacityTokensPerS={profile.frontend_capacity_tokens_per_s:g}" in result.output


def test_the_profile_command_refuses_bad_rates_as_a_usage_error(frontend: str) -> None:
    from click.testing import CliRunner

    from dynamo_ecs_cli.main import cli

    result = CliRunner().invoke(cli, ["profile", "--url", frontend, "--model", "m", "--rates", "4,2"])
    assert result.exit_code == 2
    assert "increasing rates above 0" in result.output


def test_a_decode_worker_over_the_itl_target_at_the_lowest_rate_is_refused_by_name() -> None:
    slow = [point(1, 100, 280), point(2, 700, 290)]
    with pytest.raises(ProfileError, match=r"lowest rate's mean ITL \(280 ms\).*--speedup-ratio"):
        build_profile(slow, "test", 1000, 200, 500.0, 50.0)
