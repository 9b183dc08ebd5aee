"""A local ECS with real processes: the task definitions' own commands, run on loopback.

moto keeps ECS's books; this package runs what those books say should run. `infra` starts
the infra task's etcd and nats-server from its registered task definition; `runner` plays
the service scheduler and agent for the GPU services, starting the real Dynamo frontend and
workers (Dynamo's mocker engine in place of vLLM: `engine`) with each task definition's
environment. `containers` says what is substituted and why; docs/real-dynamo.md how close
this gets to ECS and what it cannot show.
"""
