"""Derive the bench's real per-request traces from the public sources (bench/traces/README.md).

    python -m bench.traces.derive MOONCAKE_GIT_DIR SERVEGEN_GIT_DIR

Reads the sources from their git object stores (``git show``), writes
``bench/traces/mooncake_conversation.csv.gz`` and ``bench/traces/servegen_m_large_d1h22.csv.gz``
(``arrival_s,input_tokens,output_tokens``). Deterministic: the same sources give the same files.
The bench reads only the files written here; it needs neither the sources nor the network.
"""

from __future__ import annotations

import ast
import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
MOONCAKE_PATH = "FAST25-release/traces/conversation_trace.jsonl"
SERVEGEN_MODEL = "data/language/m-large"
SERVEGEN_START_S = 22 * 3600  # day 1, 22:00-23:00: a surge at 22:20, then a fall to a third
SERVEGEN_HOUR_S = 3600
SERVEGEN_WINDOW_S = 600  # ServeGen's per-client windows
SERVEGEN_KEEP = 18_000  # requests kept (uniform thinning; the bench rescales the rate anyway)
SEED = 24


def _show(repo: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", repo, "show", f"HEAD:{path}"], check=True, capture_output=True, text=True
    ).stdout


def _write(name: str, rows: list[tuple[float, int, int]]) -> Path:
    rows.sort()
    out = HERE / name
    text = "arrival_s,input_tokens,output_tokens\n" + "".join(f"{a:.3f},{i},{o}\n" for a, i, o in rows)
    # mtime 0: the same rows give the same bytes.
    with gzip.GzipFile(out, "wb", mtime=0) as handle:
        handle.write(text.encode())
    return out


def mooncake(repo: str) -> Path:
    """Mooncake's conversation trace as is: arrival (ms -> s), input and output lengths."""
    rows = []
    for line in _show(repo, MOONCAKE_PATH).splitlines():
        if line.strip():
            r = json.loads(line)
            rows.append((r["timestamp"] / 1000.0, int(r["input_length"]), int(r["output_length"])))
    return _write("mooncake_conversation.csv.gz", rows)


def _sample_length(cdf: list[float], rng: random.Random) -> int:
    """A token count from a pmf over 0..len-1 given as its cumulative sums."""
    u = rng.random() * cdf[-1]
    lo, hi = 0, len(cdf) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cdf[mid] < u:
            lo = mid + 1
        else:
            hi = mid
    return max(lo, 1)


def _cumulative(pmf_text: str) -> list[float]:
    pmf = ast.literal_eval(pmf_text)
    top = max(pmf)
    total, cdf = 0.0, []
    for k in range(top + 1):
        total += pmf.get(k, 0.0)
        cdf.append(total)
    return cdf


def servegen(repo: str) -> Path:
    """One hour of ServeGen's m-large clients, requests drawn as ServeGen's generator draws them.

    Per client and 10-minute window: ``ceil(rate x 600)`` gaps from the window's fitted arrival
    pattern (Gamma or Weibull), rescaled to fill the window; each request's input and output
    tokens from the client's length distributions in force then (ServeGen keeps
    them per 6 hours). Then a uniform thinning to
    ``SERVEGEN_KEEP`` requests.
    """
    rng = random.Random(SEED)
    listing = subprocess.run(
        ["git", "-C", repo, "ls-tree", "--name-only", "HEAD", SERVEGEN_MODEL + "/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    traces = sorted(p for p in listing if p.endswith("-trace.csv"))
    rows: list[tuple[float, int, int]] = []
    skipped: list[float] = []
    total = 0.0
    for trace_path in traces:
        windows: list[tuple[int, float, str, float, float]] = []
        for line in _show(repo, trace_path).splitlines():
            ts, rate_text, _cv, name, first, second = line.split(",")
            if (
                SERVEGEN_START_S <= int(ts) < SERVEGEN_START_S + SERVEGEN_HOUR_S
                and name
                and float(rate_text) > 0
            ):
                windows.append((int(ts), float(rate_text), name, float(first), float(second)))
        if not windows:
            continue
        total += sum(rate for _, rate, *_ in windows) / (SERVEGEN_HOUR_S // SERVEGEN_WINDOW_S)
        try:
            dataset = json.loads(_show(repo, trace_path.replace("-trace.csv", "-dataset.json")))
        except subprocess.CalledProcessError:
            # Absent from the local copy of the sources (its largest files): the client is left
            # out, and README.md says how much of the hour's rate that was.
            skipped.append(sum(rate for _, rate, *_ in windows) / len(windows))
            continue
        for start, rate, pattern, a, b in windows:
            # Length distributions are kept every 6 hours: the latest at or before the window.
            stamps = [int(k) for k in dataset if int(k) <= start]
            fields = dataset.get(str(max(stamps))) if stamps else None
            if not fields or "input_tokens" not in fields or "output_tokens" not in fields:
                continue
            inp, out = _cumulative(fields["input_tokens"]), _cumulative(fields["output_tokens"])
            n = int(-(-rate * SERVEGEN_WINDOW_S // 1))
            if pattern == "Gamma":
                gaps = [rng.gammavariate(a, b) for _ in range(n)]
            else:  # Weibull: shape a, scale b
                gaps = [rng.weibullvariate(b, a) for _ in range(n)]
            stretch = SERVEGEN_WINDOW_S / sum(gaps)
            at = float(start - SERVEGEN_START_S)
            for gap in gaps:
                at += gap * stretch
                if at < SERVEGEN_HOUR_S:
                    rows.append((at, _sample_length(inp, rng), _sample_length(out, rng)))
    print(
        f"servegen: {len(skipped)} clients without a length distribution left out, "
        f"{sum(skipped) / max(total, 1e-9):.1%} of the hour's mean rate"
    )
    keep = SERVEGEN_KEEP / len(rows)
    kept = [r for r in rows if rng.random() < keep]
    return _write("servegen_m_large_d1h22.csv.gz", kept)


if __name__ == "__main__":
    mooncake_repo, servegen_repo = sys.argv[1:3]
    for path in (mooncake(mooncake_repo), servegen(servegen_repo)):
        print(f"{path}: {path.stat().st_size} bytes")
