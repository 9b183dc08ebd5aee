"""The infra secret's list of accepted NATS users for Dynamo, and the next generation's name."""

from __future__ import annotations

import pytest

from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.planes.credentials import nats_users_text, new_password, next_nats_user, parse_nats_users


def test_users_round_trip_in_order() -> None:
    users = [("dynamo", new_password()), ("dynamo-2", new_password())]
    assert parse_nats_users(nats_users_text(users), where="infra") == users


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "dynamo",
        "dynamo:",
        ":password",
        "dynamo:pass:word",
        'dynamo:pass"word',
        "dynamo:a dynamo:b",
        None,
        ["dynamo:a"],
    ],
)
def test_a_bad_list_is_refused_naming_the_field_and_the_fix(text: object) -> None:
    with pytest.raises(InvalidInputError, match=r"secret x/planes/infra: nats_dynamo_users is not .*delete"):
        parse_nats_users(text, where="secret x/planes/infra")


@pytest.mark.parametrize(
    ("user", "following"),
    [("dynamo", "dynamo-2"), ("dynamo-2", "dynamo-3"), ("dynamo-19", "dynamo-20"), ("my-user", "my-user-2")],
)
def test_the_next_user_is_the_next_generation(user: str, following: str) -> None:
    assert next_nats_user(user) == following
