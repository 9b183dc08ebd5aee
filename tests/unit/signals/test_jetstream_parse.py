"""JetStream depth from /jsz documents captured from real nats-servers (pure).

Fixtures: `python -m devtools.capture_jsz_fixtures`. Truth, by construction: prefill_queue/
workers 4 pending + 2 ack pending, prefill_queue/audit 6 + 1, events/listener 0 + 2.
In the cluster capture each consumer has a different leader and the followers' views
are stale (num_pending 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.signals.jetstream import NotJszDocumentError, StreamSelection, jetstream_depth, parse_jsz

FIXTURES = Path(__file__).parent / "fixtures"
TRUTH = {"workers": (4, 2), "audit": (6, 1), "listener": (0, 2)}


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return document


def cluster() -> list[dict[str, Any]]:
    return [load(f"jsz_cluster_n{i}") for i in range(3)]


def test_standalone_lag_is_pending_plus_ack_pending_over_all_consumers() -> None:
    depth = jetstream_depth([load("jsz_standalone")], StreamSelection())
    assert depth.lag == sum(p + a for p, a in TRUTH.values()) == 15
    assert {c.consumer: (c.num_pending, c.num_ack_pending) for c in depth.consumers} == TRUTH
    assert depth.not_from_leader == []


def test_cluster_counts_each_consumer_once_from_its_leader() -> None:
    depth = jetstream_depth(cluster(), StreamSelection())
    assert {c.consumer: (c.num_pending, c.num_ack_pending) for c in depth.consumers} == TRUTH
    assert all(c.from_leader for c in depth.consumers)
    assert depth.lag == 15  # not 3 x 15, and not the followers' stale numbers


def test_cluster_view_order_does_not_matter() -> None:
    views = cluster()
    assert (
        jetstream_depth(views[::-1], StreamSelection()).lag == jetstream_depth(views, StreamSelection()).lag
    )


def test_without_the_leader_the_freshest_follower_is_used_and_reported() -> None:
    # n0 leads only "listener"; alone it cannot tell the others' current numbers
    depth = jetstream_depth([load("jsz_cluster_n0")], StreamSelection())
    assert sorted(depth.not_from_leader) == ["prefill_queue/audit", "prefill_queue/workers"]


@pytest.mark.parametrize(
    ("selectors", "lag"),
    [
        (["prefill_queue"], 13),
        (["prefill_queue/workers"], 6),
        (["events", "prefill_queue/audit"], 9),
        (["nope"], 0),
    ],
)
def test_selection_by_stream_or_stream_and_consumer(selectors: list[str], lag: int) -> None:
    assert jetstream_depth([load("jsz_standalone")], StreamSelection.parse(selectors)).lag == lag


def test_data_are_published_for_prefill_with_count_units() -> None:
    data = jetstream_depth([load("jsz_standalone")], StreamSelection()).data()
    assert {(d.metric, d.service, d.unit) for d in data} == {
        (names.JETSTREAM_LAG, "prefill", "Count"),
        (names.JETSTREAM_WAITING, "prefill", "Count"),
        (names.JETSTREAM_REDELIVERED, "prefill", "Count"),
    }


@pytest.mark.parametrize("body", [b"<html></html>", b'{"status": "ok"}', b"\xff\xfe"])
def test_answers_that_are_not_jsz_documents_are_refused(body: bytes) -> None:
    with pytest.raises(NotJszDocumentError):
        parse_jsz(body)


def test_bad_selector_is_refused() -> None:
    with pytest.raises(ValueError, match="STREAM/CONSUMER"):
        StreamSelection.parse(["a/b/c"])
