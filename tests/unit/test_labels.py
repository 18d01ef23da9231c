"""Every label value the operator writes is one Kubernetes accepts."""

from __future__ import annotations

import pytest

from prefect_job_operator.api.labels import is_valid_label_value, label_value

LONG_64 = "a" * 62 + "-b"  # 64 characters; [:63] would end in '-'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pool", "pool"),
        ("", ""),
        ("a" * 63, "a" * 63),  # the longest valid value is kept as is
        ("My_Pool.v2", "My_Pool.v2"),
    ],
)
def test_valid_values_are_kept(text: str, expected: str) -> None:
    assert label_value(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        LONG_64,
        "a" * 64,
        "x" * 253,  # the longest metadata.name
        "-leading",
        "trailing-",
        "has/slash",
        "spaces and ünïcödé",
        "-" * 80,
        "." * 3,
        "a" * 52 + "-" * 20,  # the truncated prefix ends in separators
    ],
)
def test_invalid_values_become_valid_hash_suffixed_values(text: str) -> None:
    value = label_value(text)
    assert is_valid_label_value(value), value
    assert len(value) <= 63
    assert value[0].isalnum() and value[-1].isalnum()
    assert label_value(text) == value  # deterministic: selectors and labels agree


def test_distinct_long_names_never_collide() -> None:
    a, b = "p" * 70 + "-one", "p" * 70 + "-two"
    assert label_value(a) != label_value(b)
    assert label_value(a)[:40] == "p" * 40  # still readable


def test_64_char_name_is_not_cut_into_a_trailing_dash() -> None:
    assert LONG_64[:63].endswith("-")
    assert not label_value(LONG_64).endswith("-")
