"""protocols.validation: one check of durations, counts and sizes for every config class."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from protocols.errors import ConfigError
from protocols.validation import (
    bound_problem,
    check_choice,
    check_count,
    check_flag,
    check_instance,
    check_seconds,
    check_size,
    check_strings,
)


@dataclass(frozen=True)
class Sample:
    value: object = None


@pytest.mark.parametrize(
    ("value", "bounds", "problem"),
    [
        (1, {"above": 0}, None),
        (0, {"above": 0}, "must be a number of seconds > 0, not 0"),
        (0, {"at_least": 0}, None),
        (-0.5, {"at_least": 0}, "must be a number of seconds >= 0, not -0.5"),
        (5, {"at_most": 5}, None),
        (5, {"below": 5}, "must be a number of seconds < 5, not 5"),
        (2.5, {"above": 1, "at_most": 2}, "must be a number of seconds > 1 and <= 2, not 2.5"),
        (math.inf, {}, "must be a number of seconds, not inf"),
        (math.nan, {"at_least": 0}, "must be a number of seconds >= 0, not nan"),
        (True, {}, "must be a number of seconds, not True"),
        ("1", {}, "must be a number of seconds, not '1'"),
    ],
)
def test_seconds_bounds_read_as_their_comparison(
    value: object, bounds: dict[str, float], problem: str | None
) -> None:
    assert bound_problem(value, "a number of seconds", **bounds) == problem
    sample = Sample(value)
    if problem is None:
        assert check_seconds(sample, "value", **bounds) == value
    else:
        with pytest.raises(ConfigError) as caught:
            check_seconds(sample, "value", **bounds)
        assert str(caught.value) == f"Sample.value: {problem}"
        assert caught.value.field == "Sample.value"


def test_counts_and_sizes_are_ints_with_bounds_written_in_full() -> None:
    assert check_count(Sample(3), "value", at_least=1) == 3
    for bad in (0, 1.0, True, None):
        with pytest.raises(ConfigError, match=r"^Sample\.value: must be an integer >= 1, not "):
            check_count(Sample(bad), "value", at_least=1)
    with pytest.raises(ConfigError, match="must be a number of bytes >= 1024 and <= 4194304"):
        check_size(Sample(5), "value", at_least=1024, at_most=4194304)


def test_flags_choices_instances_and_string_lists() -> None:
    assert check_flag(Sample(False), "value") is False
    with pytest.raises(ConfigError, match=r"Sample\.value: must be a bool, not 1"):
        check_flag(Sample(1), "value")
    assert check_choice(Sample("b"), "value", ("a", "b")) == "b"
    with pytest.raises(ConfigError, match="must be one of 'a', 'b', not 'c'"):
        check_choice(Sample("c"), "value", ("a", "b"))
    assert check_instance(Sample(None), "value", str, optional=True) is None
    with pytest.raises(ConfigError, match="must be a str or None, not 3"):
        check_instance(Sample(3), "value", str, optional=True)
    with pytest.raises(ConfigError, match="must be a str, not None"):
        check_instance(Sample(None), "value", str)
    sample = Sample(["a", "b"])
    assert check_strings(sample, "value") == ("a", "b")
    assert sample.value == ("a", "b")  # stored back, frozen or not
    for bad, message in (("ab", "not one string"), (3, "not 3"), ([1], "1 is not one")):
        with pytest.raises(ConfigError, match=message):
            check_strings(Sample(bad), "value")
