"""Interest patterns: ``*`` matches one segment, ``**`` any number, matched segment by segment."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dndm_p2p.core.pattern import Pattern, is_pattern
from dndm_p2p.errors import RouteError

# --------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------


def check(pattern: str, matching: Sequence[str], not_matching: Sequence[str]) -> None:
    compiled = Pattern(pattern)
    for path in matching:
        assert compiled.matches(path), f"{pattern!r} should match {path!r}"
        assert compiled.matches(tuple(path.split("."))), f"{pattern!r} should match {path!r}"
    for path in not_matching:
        assert not compiled.matches(path), f"{pattern!r} should not match {path!r}"
        assert not compiled.matches(path.split(".")), f"{pattern!r} should not match {path!r}"


def test_single_star_in_the_middle() -> None:
    check(
        "robot.*.temp",
        matching=["robot.arm.temp", "robot.leg.temp", "robot.temp.temp"],
        not_matching=["robot.temp", "robot.arm.x.temp", "robot.arm.temp.x", "x.arm.temp", "robot"],
    )


def test_double_star_at_the_end() -> None:
    check(
        "robot.**",
        matching=["robot", "robot.a", "robot.a.b.c", "robot.robot"],
        not_matching=["robots", "robotX.a", "x.robot", "x.robot.a"],
    )


def test_segment_prefix_is_not_a_string_prefix() -> None:
    """``robot.sensors.**`` must not match ``robot.sensorsX.temp``.

    The Go original matched ``**`` patterns by raw string prefix (``strings.HasPrefix`` on
    ``robot.sensors``), so ``robot.sensorsX.temp`` leaked into a ``robot.sensors.**`` interest.
    Matching here is segment by segment.
    """
    check(
        "robot.sensors.**",
        matching=["robot.sensors", "robot.sensors.temp", "robot.sensors.arm.temp"],
        not_matching=["robot.sensorsX.temp", "robot.sensorsX", "robot.sensor", "robot.sensors_"],
    )
    check("robot.*", matching=["robot.a"], not_matching=["robotX.a", "robot"])
    check("robot", matching=["robot"], not_matching=["robotX", "robot.x", "robo"])


def test_double_star_alone_matches_everything() -> None:
    check(
        "**",
        matching=["a", "robot", "a.b.c.d.e.f", "温度", "x-y:z"],
        not_matching=[],
    )
    assert Pattern("**").matches(())


def test_double_star_at_the_start() -> None:
    check(
        "**.temp",
        matching=["temp", "a.temp", "a.b.temp", "temp.temp"],
        not_matching=["temp.x", "a.temp.x", "atemp", "a.b.temps", "x"],
    )


def test_several_double_stars() -> None:
    check(
        "a.**.b.**.c",
        matching=[
            "a.b.c",
            "a.x.b.c",
            "a.b.y.c",
            "a.x.y.b.z.w.c",
            "a.b.b.c",
            "a.c.b.c",
            "a.b.c.b.c",
            "a.b.c.c",
            "a.a.b.b.c.c",
        ],
        not_matching=["a.c", "a.b", "b.c", "a.b.c.d", "x.a.b.c", "a.bc", "a.x.c"],
    )


def test_star_is_exactly_one_segment() -> None:
    check("*", matching=["a", "robot", "温度"], not_matching=["a.b", "a.b.c"])
    assert not Pattern("*").matches(())
    check("*.*", matching=["a.b"], not_matching=["a", "a.b.c"])
    check("a.*", matching=["a.b", "a.a"], not_matching=["a", "a.b.c", "b.a"])
    check("*.b", matching=["a.b", "b.b"], not_matching=["b", "a.b.b", "a.c"])


def test_star_then_double_star() -> None:
    check("*.**", matching=["a", "a.b", "a.b.c"], not_matching=[])
    assert not Pattern("*.**").matches(())
    check("**.*.b", matching=["a.b", "x.y.a.b", "b.b"], not_matching=["b", "a.c"])


def test_runs_of_double_star_collapse() -> None:
    assert Pattern("a.**.**.b").segments == ("a", "**", "b")
    assert Pattern("a.**.**.b") == Pattern("a.**.b")
    assert hash(Pattern("a.**.**.b")) == hash(Pattern("a.**.b"))
    assert Pattern("a.**.**.b").text == "a.**.**.b"
    check("a.**.**.b", matching=["a.b", "a.x.b", "a.x.y.b"], not_matching=["a", "b"])
    assert Pattern("a.*.*.b") != Pattern("a.*.b")


def test_pattern_value_semantics() -> None:
    pattern = Pattern("robot.*.temp")
    assert str(pattern) == "robot.*.temp"
    assert repr(pattern) == "Pattern('robot.*.temp')"
    assert pattern.segments == ("robot", "*", "temp")
    assert pattern == Pattern("robot.*.temp")
    assert pattern != Pattern("robot.**.temp")
    assert pattern != "robot.*.temp"
    assert len({pattern, Pattern("robot.*.temp")}) == 1


def test_is_pattern() -> None:
    assert is_pattern("robot.*")
    assert is_pattern("**")
    assert not is_pattern("robot.arm.temp")


def test_unicode_literals() -> None:
    check("röbot.*.温度", matching=["röbot.arm.温度"], not_matching=["robot.arm.温度"])


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "pattern is empty"),
        ("a..b", "empty segment at position 1"),
        (".a", "empty segment at position 0"),
        ("a.", "empty segment at position 1"),
        ("a.**.", "empty segment at position 2"),
        ("a*", "must be a whole segment"),
        ("a.b*c", "must be a whole segment"),
        ("*a", "must be a whole segment"),
        ("***", "must be a whole segment"),
        ("a.**b", "must be a whole segment"),
        ("a.@.b", "not allowed"),
        ("a.#.b", "not allowed"),
        ("a. b", "not allowed"),
        ("a b", "not allowed"),
        (" ", "not allowed"),
        ("a.\t", "not allowed"),
        ("a.\n.b", "not allowed"),
        ("a.\x00", "not allowed"),
        ("a\u3000b", "not allowed"),
        ("T@a.*", "not allowed"),
        ("a" * 1025, "longer than 1024"),
    ],
)
def test_invalid_patterns(text: str, problem: str) -> None:
    with pytest.raises(RouteError, match=problem):
        Pattern(text)


def test_non_string_pattern() -> None:
    with pytest.raises(RouteError, match="must be a string"):
        Pattern(b"a.*")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


def reference_match(pattern: Sequence[str], path: Sequence[str]) -> bool:
    """The definition: ``**`` is zero or more segments, ``*`` one, a literal itself."""
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return reference_match(rest, path) or (bool(path) and reference_match(pattern, path[1:]))
    if not path:
        return False
    return (head == "*" or head == path[0]) and reference_match(rest, path[1:])


pattern_segments = st.lists(st.sampled_from(["a", "b", "c", "*", "**"]), min_size=1, max_size=8)
path_segments = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=10)


@settings(max_examples=500, deadline=None)
@given(pattern=pattern_segments, path=path_segments)
def test_matches_agrees_with_reference(pattern: list[str], path: list[str]) -> None:
    compiled = Pattern(".".join(pattern))
    expected = reference_match(pattern, path)
    assert compiled.matches(".".join(path)) == expected
    assert compiled.matches(tuple(path)) == expected
    assert compiled.matches(path) == expected


@settings(max_examples=500, deadline=None)
@given(pattern=pattern_segments)
def test_matches_empty_segment_sequence_agrees_with_reference(pattern: list[str]) -> None:
    assert Pattern(".".join(pattern)).matches(()) == reference_match(pattern, ())


@settings(max_examples=500, deadline=None)
@given(pattern=pattern_segments, path=path_segments)
def test_collapsing_double_stars_keeps_the_meaning(pattern: list[str], path: list[str]) -> None:
    compiled = Pattern(".".join(pattern))
    assert reference_match(compiled.segments, path) == reference_match(pattern, path)


segment_chars = st.characters(categories=("Lu", "Ll", "Lo", "Nd"), include_characters="-_:")
literal_segments = st.text(alphabet=segment_chars, min_size=1, max_size=6)
literal_paths = st.lists(literal_segments, min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(path=literal_paths, other=literal_paths)
def test_literal_pattern_matches_exactly_its_own_path(path: list[str], other: list[str]) -> None:
    text = ".".join(path)
    assert not is_pattern(text)
    compiled = Pattern(text)
    assert compiled.segments == tuple(path)
    assert compiled.matches(text)
    assert compiled.matches(tuple(path))
    assert compiled.matches(".".join(other)) == (other == path)
    assert compiled.matches(tuple(other)) == (other == path)


@settings(max_examples=200, deadline=None)
@given(path=literal_paths, data=st.data())
def test_wildcarding_a_segment_still_matches(path: list[str], data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(path) - 1), label="index")
    wildcard = data.draw(st.sampled_from(["*", "**"]), label="wildcard")
    pattern = [*path[:index], wildcard, *path[index + 1 :]]
    assert Pattern(".".join(pattern)).matches(".".join(path))
    # '**' may also swallow nothing at that position, '*' may not.
    shorter = path[:index] + path[index + 1 :]
    if shorter:
        assert Pattern(".".join(pattern)).matches(".".join(shorter)) == (
            wildcard == "**" or reference_match(pattern, shorter)
        )
