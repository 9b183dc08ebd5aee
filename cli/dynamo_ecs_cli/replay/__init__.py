"""Policy replay: what the scaling policy would have done to a load trace, beside baselines.

`traces` loads or generates the load, `model` turns load and replica counts into the signals
the scaler reads, `policies` holds ours (the production `decide`) and the baselines,
`simulate` runs one policy over one trace and scores it, `report` prints and draws, and
`cli` is ``dynamo-ecs replay`` (``make replay``). docs/replay.md explains it.
"""
