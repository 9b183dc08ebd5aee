"""JetStream depth from /jsz documents captured from real nats-servers (pure).

Fixtures: `python -m devtools.capture_jsz_fixtures`. Truth, by construction: prefill_queue/
workers 4 pending + 2 ack pending, prefill_queue/audit 6 + 1, events/listener 0 + 2, and
prefill_queue/abandoned 5 + 2, last active 3 s before the others (its client went away).
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
ABANDONED = (5, 2)
BOTH = StreamSelection.parse(["prefill_queue", "events"])
# Between the abandoned consumer's idle time (3 s) and the others' (well under 1 s).
INACTIVE_AFTER_S = 2.0


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return document


def cluster() -> list[dict[str, Any]]:
    return [load(f"jsz_cluster_n{i}") for i in range(3)]


def test_standalone_lag_is_pending_plus_ack_pending_over_the_live_consumers() -> None:
    depth = jetstream_depth([load("jsz_standalone")], BOTH, INACTIVE_AFTER_S)
    assert depth.lag == sum(p + a for p, a in TRUTH.values()) == 15
    assert {c.consumer: (c.num_pending, c.num_ack_pending) for c in depth.counted} == TRUTH
    assert depth.not_from_leader == []


def test_an_abandoned_consumer_is_reported_not_counted() -> None:
    # Given the same document, read with a threshold below its 3 s of silence
    depth = jetstream_depth([load("jsz_standalone")], BOTH, INACTIVE_AFTER_S)
    # Then its 7 messages are not lag, but it is named and counted as inactive
    (gone,) = depth.inactive
    assert (gone.consumer, (gone.num_pending, gone.num_ack_pending)) == ("abandoned", ABANDONED)
    assert gone.idle_s is not None and gone.idle_s >= 3.0
    published = {d.metric: d.value for d in depth.data()}
    assert published[names.JETSTREAM_INACTIVE_CONSUMERS] == 1
    # With the default threshold (300 s) 3 s of silence is still alive: it counts
    assert jetstream_depth([load("jsz_standalone")], BOTH).lag == 15 + sum(ABANDONED)


def test_a_consumer_s_own_inactive_threshold_wins_and_a_waiting_client_keeps_it_live() -> None:
    document = load("jsz_standalone")
    consumers = document["account_details"][0]["stream_detail"][0]["consumer_detail"]
    abandoned = next(c for c in consumers if c["name"] == "abandoned")
    abandoned["config"]["inactive_threshold"] = 3_600 * 10**9  # an hour, in nanoseconds
    assert jetstream_depth([document], BOTH, INACTIVE_AFTER_S).inactive == []
    abandoned["config"].pop("inactive_threshold")
    abandoned["num_waiting"] = 1  # a client's pull request is outstanding
    assert jetstream_depth([document], BOTH, INACTIVE_AFTER_S).inactive == []


def test_cluster_counts_each_consumer_once_from_its_leader() -> None:
    depth = jetstream_depth(cluster(), BOTH, INACTIVE_AFTER_S)
    assert {c.consumer: (c.num_pending, c.num_ack_pending) for c in depth.counted} == TRUTH
    assert all(c.from_leader for c in depth.consumers)
    assert depth.lag == 15  # not 3 x 15, and not the followers' stale numbers
    assert [c.consumer for c in depth.inactive] == ["abandoned"]


def test_cluster_view_order_does_not_matter() -> None:
    views = cluster()
    assert jetstream_depth(views[::-1], BOTH).lag == jetstream_depth(views, BOTH).lag


def test_without_the_leader_the_freshest_follower_is_used_and_reported() -> None:
    # n0 leads only "listener"; alone it cannot tell the others' current numbers
    depth = jetstream_depth([load("jsz_cluster_n0")], BOTH)
    leads = {c.consumer for c in depth.consumers if c.from_leader}
    assert sorted(depth.not_from_leader) == sorted(
        f"{c.stream}/{c.consumer}" for c in depth.consumers if c.consumer not in leads
    )
    assert 0 < len(leads) < 4


@pytest.mark.parametrize(
    ("selectors", "lag"),
    [
        (["prefill_queue"], 13),
        (["prefill_queue/workers"], 6),
        (["events", "prefill_queue/audit"], 9),
        (["nope"], 0),
        ([], 0),  # nothing named, nothing counted
    ],
)
def test_selection_by_stream_or_stream_and_consumer(selectors: list[str], lag: int) -> None:
    selection = StreamSelection.parse(selectors)
    assert jetstream_depth([load("jsz_standalone")], selection, INACTIVE_AFTER_S).lag == lag


def test_data_are_published_for_prefill_with_count_units() -> None:
    data = jetstream_depth([load("jsz_standalone")], BOTH).data()
    assert {(d.metric, d.service, d.unit) for d in data} == {
        (names.JETSTREAM_LAG, "prefill", "Count"),
        (names.JETSTREAM_WAITING, "prefill", "Count"),
        (names.JETSTREAM_REDELIVERED, "prefill", "Count"),
        (names.JETSTREAM_INACTIVE_CONSUMERS, "prefill", "Count"),
    }


@pytest.mark.parametrize("scenario", ["tcp", "tcp_events_nats"])
def test_dynamo_1_6_1_keeps_nothing_in_jetstream(scenario: str) -> None:
    # /jsz of the NATS server a 1.6.1 frontend and its workers used under a burst, with events
    # over ZMQ (tcp) and over NATS (tcp_events_nats, the default specs): core NATS only
    document = json.loads((FIXTURES / f"dynamo_1_6_1_{scenario}_nats_jsz_loaded.json").read_text())
    assert (document["streams"], document["consumers"]) == (0, 0)
    assert jetstream_depth([document], StreamSelection.parse(["anything"])).consumers == []


@pytest.mark.parametrize("body", [b"<html></html>", b'{"status": "ok"}', b"\xff\xfe"])
def test_answers_that_are_not_jsz_documents_are_refused(body: bytes) -> None:
    with pytest.raises(NotJszDocumentError):
        parse_jsz(body)


def test_bad_selector_is_refused() -> None:
    with pytest.raises(ValueError, match="STREAM/CONSUMER"):
        StreamSelection.parse(["a/b/c"])
