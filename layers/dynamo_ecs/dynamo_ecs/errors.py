"""The project's error types.

Handlers decide retry behaviour by type: an `InvalidInputError` can never succeed on retry
(it is logged and swallowed so EventBridge or Lambda does not retry it for a day), while a
`RetryableError` is raised again so the platform retries it.
"""

from __future__ import annotations


class DynamoEcsError(Exception):
    """Base class of every error the operator raises on purpose."""


class ConfigError(DynamoEcsError):
    """The deployment configuration is invalid. Raised at init; names the field and the fix."""


class InvalidInputError(DynamoEcsError):
    """An event or payload that can never succeed. Nothing was changed; do not retry."""


class PlaceholderError(InvalidInputError):
    """A rendered task definition still holds a placeholder such as ``IP_ADDRESS`` or ``AWS_ID``."""


class RetryableError(DynamoEcsError):
    """A transient condition: the platform should retry the invocation."""


class LeaseHeldError(RetryableError):
    """Another invocation holds the deployment lease right now."""


class InfraNotReadyError(DynamoEcsError):
    """No infra (etcd + NATS) task is RUNNING: nothing may be rolled onto no endpoint."""


class TeardownIncompleteError(DynamoEcsError):
    """The Delete's time ran out while something still blocks CloudFormation's next steps."""
