"""Signals: what the scaler and the alarms see, measured every minute and published to CloudWatch.

One small module per signal source, each behind the `SignalSource` interface of `base`: it
validates its configuration when built, fetches its raw input (a NATS ``/jsz`` document,
Prometheus text, a GetMetricData answer), and turns that input into data points in a
separate pure function. `collector` runs the sources of one collection and `publish` sends
the data points with PutMetricData. The metrics contract is `dynamo_ecs.metric_names`.
"""
