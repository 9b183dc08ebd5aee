"""Cold-start cost of every function's handler module, relative to ``import boto3``.

For each ``functions/<name>/app.py``: the time to import it in a fresh interpreter, divided
by the time of ``import boto3`` in a fresh interpreter, measured alternately (so machine
noise hits both alike), median of several runs. Also the peak RSS of such a process.
Prints ``figure: import_ratio_max`` and ``figure: peak_rss_mb_max``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from devtools.handlers import FUNCTIONS_DIR, ROOT, function_names

RUNS = 7
PROBE = """
import json, resource, sys, time, importlib.util
sys.path[:0] = [{layer!r}]
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
print(json.dumps({{"s": elapsed, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""
IMPORT_BOTO3 = "import boto3"
IMPORT_HANDLER = """
spec = importlib.util.spec_from_file_location("app", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


def _measure(body: str) -> dict[str, float]:
    code = PROBE.format(layer=str(ROOT / "layers" / "dynamo_ecs"), body=body)
    env = {**os.environ, "AWS_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def run() -> None:
    functions = function_names()
    if not functions:
        print("no functions yet: nothing to measure")
        return
    worst_ratio, worst_rss = 0.0, 0.0
    for name in functions:
        body = IMPORT_HANDLER.format(path=str(FUNCTIONS_DIR / name / "app.py"))
        ratios, rss = [], []
        for _ in range(RUNS):
            base = _measure(IMPORT_BOTO3)["s"]
            handler = _measure(body)
            ratios.append(handler["s"] / base)
            rss.append(handler["rss_kb"] / 1024)
        ratio = statistics.median(ratios)
        print(f"{name}: import {ratio:.2f}x boto3, peak RSS {max(rss):.0f} MB")
        worst_ratio, worst_rss = max(worst_ratio, ratio), max(worst_rss, max(rss))
    print(f"figure: import_ratio_max {worst_ratio:.2f} x")
    print(f"figure: peak_rss_mb_max {worst_rss:.0f} MB")
