"""Logger and Metrics, created once for the whole operator.

Every function logs through `logger` (structured JSON, the deployment name attached) and
publishes through `metrics` (CloudWatch embedded metric format, so no PutMetricData call
and no added latency). X-Ray tracing is switched on in the template at the Lambda level;
the Powertools Tracer is not imported on the hot path because its X-Ray SDK import alone
costs about 0.1 s of cold start (see docs/observability.md).
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

SERVICE_NAME = "dynamo-ecs-operator"
METRICS_NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "DynamoEcs")

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
