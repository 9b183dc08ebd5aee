"""The collector's configuration fields: defaults, validation, and the variable that fixes it."""

from __future__ import annotations

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import load_config
from dynamo_ecs.errors import ConfigError


def test_defaults() -> None:
    signals = load_config({}).signals
    assert signals.jetstream_streams == []
    assert signals.nats_cluster_monitors == []
    assert signals.max_window_s == 300
    assert (signals.gpu_metric_namespace, signals.gpu_metric_name) == (
        "CWAgent",
        "nvidia_smi_utilization_gpu",
    )


def test_stream_selectors_and_cluster_monitors_from_json() -> None:
    signals = load_config(
        {
            "DYNAMO_ECS_SIGNALS__JETSTREAM_STREAMS": '["prefill_queue", "events/listener"]',
            "DYNAMO_ECS_SIGNALS__NATS_CLUSTER_MONITORS": '["http://10.0.3.7:8222"]',
        }
    ).signals
    assert signals.jetstream_streams == ["prefill_queue", "events/listener"]
    assert signals.nats_cluster_monitors == ["http://10.0.3.7:8222"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DYNAMO_ECS_SIGNALS__JETSTREAM_STREAMS", '["a.b"]'),
        ("DYNAMO_ECS_SIGNALS__JETSTREAM_STREAMS", '["a/b/c"]'),
        ("DYNAMO_ECS_SIGNALS__NATS_CLUSTER_MONITORS", '["nats://10.0.0.1:4222"]'),
        ("DYNAMO_ECS_SIGNALS__MAX_WINDOW_S", "5"),
        ("DYNAMO_ECS_SIGNALS__SAMPLES_PER_INVOCATION", "7"),
    ],
)
def test_bad_values_name_the_field_and_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config({variable: value})
    assert variable in str(error.value)


def test_every_contract_metric_has_a_unit() -> None:
    metrics = [v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and k[0] != "_"]
    contract = [m for m in metrics if m[0].isupper() and m not in ("Deployment", "Service", "Milliseconds")]
    contract = [m for m in contract if m not in ("Count", "Count/Second", "Percent", "Bytes")]
    assert set(contract) == set(names.METRIC_UNITS)
