"""The demo's load model: what a given request rate does to Dynamo's metrics.

Deliberately simple and documented, so the demo's numbers can be checked by hand:

- a frontend task (with its decode worker) serves ``FRONTEND_CAPACITY`` requests/s; its
  utilization is ``u = rate / (running * capacity)``; TTFT grows like a queue,
  ``TTFT_BASE_MS / (1 - u)`` (u capped at 0.93), ITL as ``ITL_BASE_MS * (1 + u)``;
- requests above 80 % of the running capacity wait in the frontends' queues;
- prefill work goes through a real JetStream stream: ``PREFILL_SHARE`` of the requests are
  published every minute and each running prefill task takes and acknowledges up to
  ``PREFILL_PER_TASK`` a minute, so the lag the collector reads is real backlog;
- each GPU instance reports GPU utilization like the CloudWatch agent would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from devtools.dynamo_frontend import MetricsServer

FRONTEND_CAPACITY = 5.0  # requests/s per frontend task
TTFT_BASE_MS = 100.0
ITL_BASE_MS = 12.0
PREFILL_SHARE = 2.0  # prefill messages per request/s, per minute
PREFILL_PER_TASK = 8  # messages one prefill task completes per minute
SAMPLES_PER_FRONTEND = 120  # requests observed per frontend per minute (enough for a p90)


@dataclass(frozen=True)
class FrontendLoad:
    utilization: float
    ttft_ms: float
    itl_ms: float
    queued_per_task: float


def frontend_load(rate: float, running: int) -> FrontendLoad:
    running = max(running, 1)
    u = rate / (running * FRONTEND_CAPACITY)
    capped = min(u, 0.93)
    queued = max(rate - 0.8 * running * FRONTEND_CAPACITY, 0.0) * 3 / running
    return FrontendLoad(u, TTFT_BASE_MS / (1 - capped), ITL_BASE_MS * (1 + capped), queued)


def feed_frontends(
    servers: list[MetricsServer], load: FrontendLoad, rng: random.Random, prefill_backlog: int = 0
) -> None:
    """One minute of traffic on every running frontend's /metrics.

    ``prefill_backlog`` (the prefill work not yet done) waits on the prefill side of Dynamo's
    queue (``stage_requests{phase="prefill"}``), shared by the frontends.
    """
    for server in servers:
        ttft = [rng.lognormvariate(0, 0.3) * load.ttft_ms / 1000 for _ in range(SAMPLES_PER_FRONTEND)]
        itl = [rng.lognormvariate(0, 0.2) * load.itl_ms / 1000 for _ in range(SAMPLES_PER_FRONTEND)]
        server.metrics.observe(ttft=ttft, itl=itl, duration=[t + 2.0 for t in ttft], requests=len(ttft))
        queued = round(load.queued_per_task)
        waiting_for_prefill = round(prefill_backlog / max(len(servers), 1))
        server.metrics.set_load(
            active=min(load.utilization, 1.0) * 8,
            queued_by_stage={("preprocess", ""): queued, ("route", "prefill"): waiting_for_prefill},
        )


def prefill_messages(rate: float) -> int:
    return round(rate * PREFILL_SHARE)
