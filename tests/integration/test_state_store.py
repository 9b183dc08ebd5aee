"""The state table's lease, versioned records and decision log, against moto server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from devtools.services import aws_test_environment, moto_server
from dynamo_ecs import aws
from dynamo_ecs.errors import LeaseHeldError
from dynamo_ecs.state import StaleRecordError, StateStore


@pytest.fixture
def atomic_state_table(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The state table on a moto server that serves one request at a time, so that its
    conditional writes are atomic as DynamoDB's are (`devtools.moto_serial`)."""
    from devtools.template import create_state_table

    with moto_server(tmp_path_factory.mktemp("moto-serial"), serial=True) as server:
        for key, value in aws_test_environment(server.url).items():
            monkeypatch.setenv(key, value)
        aws.reset_clients()
        create_state_table("dynamo-ecs-state")
        yield "dynamo-ecs-state"
    aws.reset_clients()


def test_lease_is_exclusive_until_released(state_table: str) -> None:
    store = StateStore(state_table, "dynamo")
    assert store.try_acquire_lease("a", ttl_s=60)
    assert not store.try_acquire_lease("b", ttl_s=60)
    assert store.try_acquire_lease("a", ttl_s=60), "the holder may renew"
    store.release_lease("a")
    assert store.try_acquire_lease("b", ttl_s=60)


def test_an_expired_lease_can_be_taken_over(state_table: str) -> None:
    clock = [1000.0]
    store = StateStore(state_table, "dynamo", clock=lambda: clock[0])
    assert store.try_acquire_lease("crashed", ttl_s=30)
    clock[0] += 31
    assert store.try_acquire_lease("next", ttl_s=30)
    store.release_lease("crashed")  # a late release by the old holder must not free it
    assert not store.try_acquire_lease("third", ttl_s=30)


def test_leases_are_per_deployment(state_table: str) -> None:
    assert StateStore(state_table, "one").try_acquire_lease("a", ttl_s=60)
    assert StateStore(state_table, "two").try_acquire_lease("b", ttl_s=60)


def test_ten_concurrent_holders_never_overlap(atomic_state_table: str) -> None:
    store = StateStore(atomic_state_table, "dynamo")
    inside, overlaps, done = [0], [0], []
    lock = threading.Lock()

    def work() -> None:
        with store.lease(ttl_s=60, wait_s=30):
            with lock:
                inside[0] += 1
                overlaps[0] = max(overlaps[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1
        done.append(1)

    threads = [threading.Thread(target=work) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(done) == 10
    assert overlaps[0] == 1


def test_lease_wait_gives_up_with_a_retryable_error(state_table: str) -> None:
    store = StateStore(state_table, "dynamo")
    assert store.try_acquire_lease("other", ttl_s=60)
    with pytest.raises(LeaseHeldError), store.lease(ttl_s=60, wait_s=0.2):
        pass


def test_records_are_compare_and_set(state_table: str) -> None:
    store = StateStore(state_table, "dynamo")
    assert store.get_record("spec#frontend").version == 0
    first = store.put_record("spec#frontend", {"image": "a"}, expected_version=0)
    assert store.get_record("spec#frontend") == first
    with pytest.raises(StaleRecordError):
        store.put_record("spec#frontend", {"image": "b"}, expected_version=0)
    store.put_record("spec#frontend", {"image": "c"}, expected_version=1)
    assert store.get_record("spec#frontend").data == {"image": "c"}


def test_a_retried_write_whose_answer_was_lost_is_not_a_conflict(state_table: str) -> None:
    # Given a write that reached the table (its answer lost, so botocore sends it again)
    store = StateStore(state_table, "dynamo")
    store.put_record("scaling#history", {"frontend": [1, 2]}, expected_version=0)
    # When the same write arrives again, Then it is recognised as ours
    again = store.put_record("scaling#history", {"frontend": [1, 2]}, expected_version=0)
    assert again.version == 1
    # but a different write at the old version is still a conflict
    with pytest.raises(StaleRecordError):
        store.put_record("scaling#history", {"frontend": [3]}, expected_version=0)


def test_decision_log_is_newest_first_and_filterable(state_table: str) -> None:
    clock = [1_700_000_000.0]
    store = StateStore(state_table, "dynamo", clock=lambda: clock[0])
    store.append_decision("endpoints", {"new": "10.0.0.1"})
    clock[0] += 1
    store.append_decision("scaling", {"service": "frontend", "desired": 2})
    clock[0] += 1
    store.append_decision("endpoints", {"new": "10.0.0.2"})
    entries = store.decisions()
    assert [e.get("new", e.get("desired")) for e in entries] == ["10.0.0.2", 2, "10.0.0.1"]
    assert [e["new"] for e in store.decisions(kind="endpoints")] == ["10.0.0.2", "10.0.0.1"]
    assert entries[0]["at"].startswith("2023-11-14T22:13:22")


def test_several_records_come_back_in_one_read(state_table: str) -> None:
    store = StateStore(state_table, "dynamo")
    store.put_record("a", {"n": 1}, expected_version=0)
    store.put_record("b", {"n": 2}, expected_version=0)
    records = store.get_records(["a", "b", "missing"])
    assert records["a"].data == {"n": 1} and records["b"].version == 1
    assert records["missing"].version == 0
