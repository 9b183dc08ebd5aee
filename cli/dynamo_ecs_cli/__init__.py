"""The operator's command line, ``dynamo-ecs``: preflight, status, decisions, replay, redeploy.

Installed with the project (``pip install .``); it imports the shared layer package
(`dynamo_ecs`) but the layer never imports it, so the Lambda functions carry none of its
dependencies (click, rich, matplotlib).
"""

__version__ = "0.1.0"
