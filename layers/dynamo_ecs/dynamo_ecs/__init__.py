"""Shared package of dynamo-ecs-operator: config, AWS access, reconcilers and signals."""

__version__ = "0.1.0"
