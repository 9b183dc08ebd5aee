"""Scale-ahead's arithmetic, and the request- and token-rate series the predictive floor reads."""

from __future__ import annotations

from datetime import UTC, datetime

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.scaling.metrics_reader import (
    DEMAND_QUERY_ID,
    demand_series,
    metric_queries,
    predictive_floor_on,
    token_demand_queries,
)
from dynamo_ecs.scaling.scale_ahead import instances_for, new_desired_capacity


def test_one_task_per_instance_without_an_instance_type() -> None:
    assert instances_for(DeploymentConfig(), {"frontend": 3, "prefill": 2}) == 5


def test_four_gpu_instances_hold_one_task_of_each_service() -> None:
    config = DeploymentConfig.model_validate({"gpu_instance_type": "g6e.12xlarge"})
    # each service's tasks reserve their host ports once per instance (dynamo_ecs.capacity)
    assert instances_for(config, {"frontend": 2, "prefill": 2}) == 2
    assert instances_for(config, {"frontend": 2, "prefill": 5}) == 5
    assert instances_for(config, {"frontend": 1, "prefill": 0}) == 1


def test_the_group_is_only_ever_raised_and_never_past_its_max() -> None:
    assert new_desired_capacity(6, {"DesiredCapacity": 4, "MaxSize": 8}) == 6
    assert new_desired_capacity(9, {"DesiredCapacity": 4, "MaxSize": 8}) == 8
    assert new_desired_capacity(3, {"DesiredCapacity": 4, "MaxSize": 8}) is None
    assert new_desired_capacity(8, {"DesiredCapacity": 8, "MaxSize": 8}) is None


def test_the_demand_series_is_every_datapoint_oldest_first_stamped_at_its_end() -> None:
    stamps = [datetime.fromtimestamp(t, UTC) for t in (1200.0, 1080.0, 1140.0)]
    series = demand_series({"Timestamps": stamps, "Values": [3.0, 1.0, 2.0]}, 60, now=1250.0)
    assert [(o.at, o.value) for o in series] == [(1140.0, 1.0), (1200.0, 2.0), (1250.0, 3.0)]


def test_the_demand_query_is_read_only_with_the_floor_on() -> None:
    assert not predictive_floor_on(DeploymentConfig())
    assert predictive_floor_on(DeploymentConfig.model_validate({"prefill": {"capacity_rps": 3}}))
    queries, _ = metric_queries(DeploymentConfig(), [])
    assert all(q["Id"] != DEMAND_QUERY_ID for q in queries)


def test_each_service_with_a_token_capacity_reads_its_own_token_rate_of_the_frontend() -> None:
    # Given a token capacity on prefill only
    config = DeploymentConfig.model_validate({"prefill": {"capacity_tokens_per_s": 8000}})
    # Then one query: the frontend's input tokens/s, every datapoint of the period
    [query] = token_demand_queries(config)
    stat = query["MetricStat"]
    assert stat["Metric"]["MetricName"] == names.INPUT_TOKEN_RATE
    assert {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]} == {
        "Deployment": "dynamo",
        "Service": "frontend",
    }
    assert (stat["Period"], stat["Stat"]) == (config.scaling.metric_period_s, "Average")
    # With the frontend's too, its output tokens/s; without either, nothing
    both = DeploymentConfig.model_validate(
        {"prefill": {"capacity_tokens_per_s": 8000}, "frontend": {"capacity_tokens_per_s": 1600}}
    )
    metrics = {q["Id"]: q["MetricStat"]["Metric"]["MetricName"] for q in token_demand_queries(both)}
    assert metrics == {"tokens_in": names.INPUT_TOKEN_RATE, "tokens_out": names.OUTPUT_TOKEN_RATE}
    assert token_demand_queries(DeploymentConfig()) == []
