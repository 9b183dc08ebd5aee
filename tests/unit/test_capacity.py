"""GPU task sizes from the instance type, tasks per instance, and the GPU budget's arithmetic."""

from __future__ import annotations

import pytest

from dynamo_ecs import capacity
from dynamo_ecs.config import load_config
from dynamo_ecs.errors import ConfigError
from dynamo_ecs.scaling.decide import fit_budget
from dynamo_ecs.specs import load_default_spec

# The example's task size (specs/*.json): 2 vCPU, 40 GiB.
EXAMPLE_MEMORY_MIB = int(load_default_spec("frontend")["memory"])


@pytest.mark.parametrize("name", sorted(capacity.INSTANCE_TYPES))
def test_a_full_instance_of_tasks_fits_what_ecs_can_place(name: str) -> None:
    # Given an instance type and the size one GPU task gets on it
    instance = capacity.INSTANCE_TYPES[name]
    size = capacity.task_size(name)
    # Then as many tasks as it has GPUs fit its registered memory and CPU, with one GPU each
    assert size.gpus == 1
    assert instance.gpus * size.memory_mib <= instance.registered_memory_mib
    assert instance.gpus * size.cpu <= instance.cpu_units
    # and the registered memory leaves the kernel and the agents their share
    assert instance.registered_memory_mib <= instance.memory_mib * 0.95 - capacity.ECS_RESERVED_MEMORY_MIB
    # and each task gets at least 12 GiB and 3 vCPUs: room for the frontend, a worker and vLLM
    assert size.memory_mib >= 12 * 1024 and size.cpu >= 3 * 1024


def test_the_examples_40_gib_fit_none_of_the_small_types() -> None:
    too_small = {
        name for name, t in capacity.INSTANCE_TYPES.items() if t.registered_memory_mib < EXAMPLE_MEMORY_MIB
    }
    assert too_small == {"g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6.2xlarge", "g6e.xlarge"}


def test_an_instance_holds_one_task_of_each_service_for_their_host_ports() -> None:
    assert capacity.tasks_per_instance("g6e.12xlarge") == {"frontend": 1, "prefill": 1, "together": 2}
    assert capacity.tasks_per_instance("p5.48xlarge", gpus_per_task=2) == {
        "frontend": 1,
        "prefill": 1,
        "together": 2,
    }
    assert capacity.tasks_per_instance("g6e.2xlarge") == {"frontend": 1, "prefill": 1, "together": 1}
    # 4 frontends need 4 instances whatever else runs; 1 frontend and 1 prefill share one;
    # 3 prefill tasks need 3 instances (each reserves the same host ports)
    assert capacity.instances_needed("g6e.12xlarge", 4, 4) == 4
    assert capacity.instances_needed("g6e.12xlarge", 1, 1) == 1
    assert capacity.instances_needed("g6e.12xlarge", 1, 3) == 3
    assert capacity.instances_needed("g6e.12xlarge", 1, 1, prefill_gpus=3) == 1
    assert capacity.gpus_paid("g6e.12xlarge", 2, 0) == 8
    # on 1-GPU types the paid GPUs are the tasks' GPUs
    assert capacity.gpus_paid("g6e.2xlarge", 3, 2) == 5


def test_a_task_cannot_ask_for_more_gpus_than_an_instance_has() -> None:
    with pytest.raises(ValueError, match=r"does not fit g6e\.2xlarge"):
        capacity.task_size("g6e.2xlarge", gpus=2)
    with pytest.raises(ValueError, match=r"unknown GPU instance type 'g4dn\.xlarge'"):
        capacity.task_size("g4dn.xlarge")


def test_the_budget_counts_the_instances_gpus_on_multi_gpu_types() -> None:
    # Given g6e.12xlarge (4 GPUs, one frontend each) and a budget of 8 GPUs: two instances
    config = load_config(
        {
            "DYNAMO_ECS_GPU_INSTANCE_TYPE": "g6e.12xlarge",
            "DYNAMO_ECS_GPU_BUDGET": "8",
            "DYNAMO_ECS_FRONTEND__MAX": "4",
            "DYNAMO_ECS_PREFILL__MAX": "6",
        }
    )
    # When both services want 4 and the frontend is under more pressure
    granted, note = fit_budget(
        config,
        {"frontend": 4, "prefill": 4},
        {"frontend": 1, "prefill": 1},
        {"frontend": 3.0, "prefill": 1.0},
    )
    # Then the frontend gets 2 (one per instance) and prefill one task beside each
    assert granted == {"frontend": 2, "prefill": 2}
    assert config.gpus_used(granted) == 8 and note is not None
    # (counted by the tasks' GPUs alone, 4 + 4 = 8 would have "fit" and needed 4 instances: 16 GPUs)
    assert capacity.gpus_paid("g6e.12xlarge", 4, 4) == 16


def test_a_budget_below_one_instance_of_a_multi_gpu_type_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"gpu_budget \(2\) < GPUs the minimums need \(4 on g6e.12xlarge"):
        load_config({"DYNAMO_ECS_GPU_INSTANCE_TYPE": "g6e.12xlarge", "DYNAMO_ECS_GPU_BUDGET": "2"})
    with pytest.raises(ConfigError, match="unknown GPU instance type"):
        load_config({"DYNAMO_ECS_GPU_INSTANCE_TYPE": "m5.large"})


def test_the_services_pack_an_instances_gpus_before_starting_another() -> None:
    # moto does not keep a service's placement strategy: checked on the CreateService input
    from dynamo_ecs.config import DeploymentConfig
    from dynamo_ecs.endpoints.gpu_services import _service_definition, parse_properties

    props = parse_properties(
        {
            "Image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
            "Model": "Qwen/Qwen3-0.6B",
            "ExecutionRoleArn": "arn:aws:iam::123456789012:role/x",
            "TaskRoleArn": "arn:aws:iam::123456789012:role/x",
            "FrontendLogGroup": "/f",
            "PrefillLogGroup": "/p",
        }
    )
    for role in ("frontend", "prefill"):
        definition = _service_definition(DeploymentConfig(), role, props, "arn:td")
        assert definition["placementStrategy"] == [{"type": "binpack", "field": "memory"}]
