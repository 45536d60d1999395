"""Routes: plain ``Type@path`` and hashed ``prefix#hash`` routes, validation and round trips."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dndm_p2p.core.route import (
    HASH_LENGTH,
    MAX_ROUTE_LENGTH,
    HashedRoute,
    PlainRoute,
    Route,
    message_full_name,
    parse_route,
    route_hash,
    split_path,
)
from dndm_p2p.errors import PermanentError, RouteError, TypeMismatch
from tests.proto.messages_pb2 import Bar, Foo, Sample

B64URL_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
PATH = "robot.arm.temp"
PLAIN_TEXT = f"dndm.test.Foo@{PATH}"


def b64url(raw: bytes) -> str:
    """Unpadded URL-safe base64, written out independently of the library."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def sha256_b64(text: str) -> str:
    return b64url(hashlib.sha256(text.encode("utf-8")).digest())


def hmac_b64(secret: bytes, text: str) -> str:
    return b64url(hmac.new(secret, text.encode("utf-8"), hashlib.sha256).digest())


# --------------------------------------------------------------------------------------------
# Plain routes
# --------------------------------------------------------------------------------------------


def test_plain_route_of_message_class() -> None:
    route = PlainRoute.of(Foo, "a.b")
    assert str(route) == "dndm.test.Foo@a.b"
    assert route.id == str(route) == "dndm.test.Foo@a.b"
    assert route.msg_type is Foo
    assert route.type_name == "dndm.test.Foo"
    assert route.path == "a.b"
    assert route.segments == ("a", "b")
    assert not route.is_hashed
    assert repr(route) == "PlainRoute('dndm.test.Foo@a.b')"


def test_message_full_name() -> None:
    assert message_full_name(Foo) == "dndm.test.Foo"
    assert message_full_name(Bar) == "dndm.test.Bar"
    assert message_full_name(Sample) == "dndm.test.Sample"


def test_same_path_different_types_are_different_routes() -> None:
    foo = PlainRoute.of(Foo, "a.b")
    bar = PlainRoute.of(Bar, "a.b")
    assert foo != bar
    assert foo.id != bar.id
    assert hash(foo) != hash(bar)
    assert len({foo, bar}) == 2


def test_same_type_different_paths_are_different_routes() -> None:
    assert PlainRoute.of(Foo, "a.b") != PlainRoute.of(Foo, "a.c")
    assert PlainRoute.of(Foo, "a.b") != PlainRoute.of(Foo, "a")


def test_equality_ignores_the_bound_type() -> None:
    typed = PlainRoute.of(Foo, "a.b")
    parsed = parse_route("dndm.test.Foo@a.b")
    assert isinstance(parsed, PlainRoute)
    assert parsed.msg_type is None
    assert parsed == typed
    assert typed == parsed
    assert hash(parsed) == hash(typed)
    assert PlainRoute("dndm.test.Foo", "a.b") == typed


def test_routes_work_as_dict_keys_and_set_members() -> None:
    typed = PlainRoute.of(Foo, "a.b")
    parsed = parse_route("dndm.test.Foo@a.b")
    table: dict[Route, str] = {typed: "typed"}
    assert table[parsed] == "typed"
    table[parsed] = "parsed"
    assert len(table) == 1
    assert table[typed] == "parsed"
    routes = {typed, parsed, PlainRoute.of(Bar, "a.b"), PlainRoute.of(Foo, "a.b").bind(Foo)}
    assert len(routes) == 2


def test_route_is_not_equal_to_its_string() -> None:
    route = PlainRoute.of(Foo, "a.b")
    assert route != "dndm.test.Foo@a.b"
    assert route != object()


def test_bind_checks_the_type() -> None:
    parsed = parse_route("dndm.test.Foo@a.b")
    bound = parsed.bind(Foo)
    assert bound.msg_type is Foo
    assert bound == parsed
    assert bound.bind(Foo) is bound
    with pytest.raises(TypeMismatch, match=r"dndm\.test\.Bar"):
        parsed.bind(Bar)
    with pytest.raises(TypeMismatch, match="not a protobuf message class"):
        parsed.bind(int)  # type: ignore[arg-type]


def test_constructor_with_wrong_msg_type_is_a_type_mismatch() -> None:
    with pytest.raises(TypeMismatch, match=r"carries 'dndm\.test\.Foo'"):
        PlainRoute("dndm.test.Foo", "a", Bar)


def test_unicode_and_punctuation_in_segments_are_allowed() -> None:
    route = PlainRoute.of(Foo, "röbot.Ärm-1.t_2.ns:key.温度")
    assert route.segments == ("röbot", "Ärm-1", "t_2", "ns:key", "温度")
    assert parse_route(str(route)) == route


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def test_errors_are_permanent_value_errors() -> None:
    with pytest.raises(RouteError) as info:
        PlainRoute.of(Foo, "")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PermanentError)
    assert not info.value.transient


def test_empty_path_is_rejected() -> None:
    with pytest.raises(RouteError, match="path is empty"):
        PlainRoute.of(Foo, "")


@pytest.mark.parametrize(
    ("path", "position"),
    [("a..b", 1), (".a", 0), ("a.", 1), (".", 0), ("a.b..", 2)],
)
def test_empty_segment_is_rejected(path: str, position: int) -> None:
    with pytest.raises(RouteError, match=f"empty segment at position {position}"):
        PlainRoute.of(Foo, path)


@pytest.mark.parametrize(
    "bad",
    ["@", "#", "*", " ", "\t", "\n", "\r", "\x00", "\x01", "\x1f", "\x7f", "\u00a0", "\u3000"],
)
def test_forbidden_characters_in_a_path_are_rejected(bad: str) -> None:
    path = f"robot.a{bad}b.temp"
    with pytest.raises(RouteError, match=r"not allowed") as info:
        PlainRoute.of(Foo, path)
    assert repr(bad) in str(info.value)
    assert "'a" in str(info.value)  # names the segment


@pytest.mark.parametrize("bad", ["\x80", "\x9b", "\x9f"])
def test_c1_control_characters_in_a_path_are_rejected(bad: str) -> None:
    """U+0080..U+009F are control characters (Unicode category Cc) like U+0000..U+001F.

    Only U+0085 (which is also white space) is caught today; the others slip through.
    """
    with pytest.raises(RouteError, match="not allowed"):
        PlainRoute.of(Foo, f"robot.a{bad}b")


@pytest.mark.parametrize("bad", [chr(0xD800), chr(0xDC00), chr(0xDFFF)])
def test_lone_surrogates_in_a_path_are_rejected(bad: str) -> None:
    """A path that cannot be encoded as UTF-8 can never be hashed nor sent as a protobuf string.

    It must be refused with a RouteError up front, not accepted and then crash with
    UnicodeEncodeError when the route is hashed.
    """
    path = f"robot.a{bad}b"
    with pytest.raises(RouteError):
        PlainRoute.of(Foo, path)
    with pytest.raises(RouteError):
        HashedRoute.of(Foo, path)
    with pytest.raises(RouteError):
        parse_route(f"dndm.test.Foo@{path}")


@pytest.mark.parametrize("not_a_message", [int, None, str, object, "dndm.test.Foo", Foo()])
def test_non_message_class_is_a_type_mismatch(not_a_message: object) -> None:
    with pytest.raises(TypeMismatch, match="not a protobuf message class"):
        PlainRoute.of(not_a_message, "a.b")  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch, match="not a protobuf message class"):
        HashedRoute.of(not_a_message, "a.b")  # type: ignore[arg-type]


def test_abstract_message_base_is_a_type_mismatch() -> None:
    from google.protobuf.message import Message

    with pytest.raises(TypeMismatch, match="abstract protobuf base"):
        PlainRoute.of(Message, "a.b")


def test_non_string_path_is_rejected() -> None:
    with pytest.raises(RouteError, match="path must be a string"):
        PlainRoute.of(Foo, b"a.b")  # type: ignore[arg-type]
    with pytest.raises(RouteError, match="must be a string"):
        parse_route(b"dndm.test.Foo@a")  # type: ignore[arg-type]


def test_overly_long_routes_are_rejected() -> None:
    with pytest.raises(RouteError, match=f"longer than {MAX_ROUTE_LENGTH}"):
        PlainRoute.of(Foo, "a" * (MAX_ROUTE_LENGTH + 1))
    # Path fits on its own, but the whole route does not.
    path = "a" * (MAX_ROUTE_LENGTH - len("dndm.test.Foo@") + 1)
    with pytest.raises(RouteError, match=f"longer than {MAX_ROUTE_LENGTH}"):
        PlainRoute.of(Foo, path)
    with pytest.raises(RouteError, match=f"longer than {MAX_ROUTE_LENGTH}"):
        parse_route("dndm.test.Foo@" + path)
    # Exactly at the limit is fine.
    fits = "a" * (MAX_ROUTE_LENGTH - len("dndm.test.Foo@"))
    route = PlainRoute.of(Foo, fits)
    assert len(str(route)) == MAX_ROUTE_LENGTH
    assert parse_route(str(route)) == route


@pytest.mark.parametrize("text", ["", "a.b", "dndm.test.Foo", "robot", "Foo a.b"])
def test_parse_route_without_separator(text: str) -> None:
    with pytest.raises(RouteError, match="is not a route"):
        parse_route(text)


@pytest.mark.parametrize("text", ["Foo@a#b", "a#b@c", "p#" + "A" * 43 + "@x"])
def test_parse_route_with_both_separators(text: str) -> None:
    with pytest.raises(RouteError, match="mixes '@'"):
        parse_route(text)


@pytest.mark.parametrize("text", ["Foo@a@b", "a@@b", "@@"])
def test_parse_route_with_two_at_signs(text: str) -> None:
    with pytest.raises(RouteError, match="more than one '@'"):
        parse_route(text)


def test_parse_route_with_two_hashes() -> None:
    with pytest.raises(RouteError, match="more than one '#'"):
        parse_route("p#" + "A" * 43 + "#")


@pytest.mark.parametrize("text", ["@a.b", "@"])
def test_parse_route_with_empty_type(text: str) -> None:
    with pytest.raises(RouteError, match="empty type name"):
        parse_route(text)


def test_parse_route_with_empty_path() -> None:
    with pytest.raises(RouteError, match="path is empty"):
        parse_route("dndm.test.Foo@")


@pytest.mark.parametrize(
    "type_name",
    [
        "1Foo",
        "dndm..Foo",
        ".dndm.Foo",
        "dndm.Foo.",
        "dndm.1Foo",
        "dn-dm.Foo",
        "dndm/Foo",
        "dndm Foo",
        "dndm.Föo",
        "dndm.Foo\n",
        "*",
    ],
)
def test_type_names_that_are_not_protobuf_full_names(type_name: str) -> None:
    with pytest.raises(RouteError, match="not a protobuf full name"):
        parse_route(f"{type_name}@a.b")
    with pytest.raises(RouteError, match="not a protobuf full name"):
        PlainRoute(type_name, "a.b")


@pytest.mark.parametrize("type_name", ["Foo", "_x", "a.b.C", "a1.B_2", "dndm.test.Foo"])
def test_valid_type_names(type_name: str) -> None:
    assert parse_route(f"{type_name}@p").type_name == type_name  # type: ignore[union-attr]


def test_parse_route_errors_name_the_bad_segment() -> None:
    with pytest.raises(RouteError, match=r"empty segment at position 1"):
        parse_route("dndm.test.Foo@a..b")
    with pytest.raises(RouteError, match=r"'\*' in segment 'b\*'"):
        parse_route("dndm.test.Foo@a.b*")


def test_split_path() -> None:
    assert split_path("a") == ("a",)
    assert split_path("a.b.c") == ("a", "b", "c")
    with pytest.raises(RouteError, match="prefix is empty"):
        split_path("", what="prefix")


# --------------------------------------------------------------------------------------------
# Hashed routes
# --------------------------------------------------------------------------------------------


def test_hashed_route_default_prefix_is_first_segment() -> None:
    route = HashedRoute.of(Foo, PATH)
    assert route.prefix == "robot"
    assert route.is_hashed
    assert route.msg_type is Foo
    assert str(route) == f"robot#{route.digest}"
    assert route.id == route.digest


def test_hashed_route_hash_is_independently_computable() -> None:
    route = HashedRoute.of(Foo, PATH)
    expected = sha256_b64(PLAIN_TEXT)
    assert len(expected) == HASH_LENGTH == 43
    assert route.digest == expected
    assert len(route.digest) == 43
    assert "=" not in route.digest
    assert set(route.digest) <= set(B64URL_ALPHABET)
    assert route_hash(PLAIN_TEXT) == expected
    assert PlainRoute.of(Foo, PATH).hashed() == route


def test_hashed_route_with_secret_is_an_hmac() -> None:
    secret = b"s3cret"
    keyed = HashedRoute.of(Foo, PATH, secret=secret)
    assert keyed.digest == hmac_b64(secret, PLAIN_TEXT)
    assert keyed.digest != HashedRoute.of(Foo, PATH).digest
    assert keyed != HashedRoute.of(Foo, PATH)
    other = HashedRoute.of(Foo, PATH, secret=b"other")
    assert other.digest == hmac_b64(b"other", PLAIN_TEXT)
    assert other != keyed
    # An empty secret is still a key: HMAC with b"" is not plain SHA-256.
    assert HashedRoute.of(Foo, PATH, secret=b"").digest == hmac_b64(b"", PLAIN_TEXT)
    assert HashedRoute.of(Foo, PATH, secret=b"").digest != sha256_b64(PLAIN_TEXT)


def test_hashed_route_secret_must_be_bytes() -> None:
    with pytest.raises(RouteError, match="secret must be bytes"):
        HashedRoute.of(Foo, PATH, secret="s3cret")  # type: ignore[arg-type]


def test_hashed_routes_of_different_types_differ() -> None:
    assert HashedRoute.of(Foo, PATH) != HashedRoute.of(Bar, PATH)
    assert HashedRoute.of(Bar, PATH).digest == sha256_b64(f"dndm.test.Bar@{PATH}")


@pytest.mark.parametrize("prefix", ["robot", "robot.arm", "robot.arm.temp"])
def test_hashed_route_segment_prefixes_are_allowed(prefix: str) -> None:
    route = HashedRoute.of(Foo, PATH, prefix=prefix)
    assert route.prefix == prefix
    assert str(route) == f"{prefix}#{sha256_b64(PLAIN_TEXT)}"


@pytest.mark.parametrize("prefix", ["rob", "robot.ar", "arm", "robot.temp", "robot.arm.temp.x"])
def test_hashed_route_prefix_must_be_a_segment_prefix(prefix: str) -> None:
    with pytest.raises(RouteError, match="is not a dot-segment prefix"):
        HashedRoute.of(Foo, PATH, prefix=prefix)


@pytest.mark.parametrize(
    ("prefix", "problem"), [("robot.", "empty segment"), ("r*", "not allowed")]
)
def test_hashed_route_prefix_must_be_a_valid_path(prefix: str, problem: str) -> None:
    with pytest.raises(RouteError, match=problem):
        HashedRoute.of(Foo, PATH, prefix=prefix)


def test_hashed_route_empty_prefix_shows_nothing() -> None:
    route = HashedRoute.of(Foo, PATH, prefix="")
    assert route.prefix == ""
    assert str(route).startswith("#")
    assert str(route) == "#" + sha256_b64(PLAIN_TEXT)
    assert parse_route(str(route)) == route


@pytest.mark.parametrize("prefix", ["", "robot", "robot.arm"])
def test_hashed_route_string_hides_type_and_path(prefix: str) -> None:
    text = str(HashedRoute.of(Foo, PATH, prefix=prefix, secret=b"k"))
    assert "dndm" not in text
    assert "Foo" not in text
    assert "temp" not in text
    assert PATH not in text
    assert "@" not in text
    if prefix != "robot.arm":
        assert "arm" not in text.partition("#")[0]


def test_verify() -> None:
    plain = HashedRoute.of(Foo, PATH)
    assert plain.verify(Foo, PATH)
    assert not plain.verify(Bar, PATH)
    assert not plain.verify(Foo, "robot.arm")
    assert not plain.verify(Foo, PATH, secret=b"k")
    keyed = HashedRoute.of(Foo, PATH, secret=b"k")
    assert keyed.verify(Foo, PATH, secret=b"k")
    assert not keyed.verify(Foo, PATH)
    assert not keyed.verify(Foo, PATH, secret=b"K")
    assert not keyed.verify(Bar, PATH, secret=b"k")
    # A parsed (unbound) hashed route can still be verified.
    parsed = parse_route(str(keyed))
    assert isinstance(parsed, HashedRoute)
    assert parsed.msg_type is None
    assert parsed.verify(Foo, PATH, secret=b"k")


def test_hashed_route_equality_is_by_hash_alone() -> None:
    short = HashedRoute.of(Foo, PATH, prefix="robot")
    long = HashedRoute.of(Foo, PATH, prefix="robot.arm")
    hidden = HashedRoute.of(Foo, PATH, prefix="")
    assert str(short) != str(long)
    assert short == long == hidden
    assert hash(short) == hash(long) == hash(hidden)
    assert len({short, long, hidden}) == 1
    # Also for routes built directly from a digest, even with unrelated prefixes.
    digest = sha256_b64(PLAIN_TEXT)
    assert HashedRoute("x.y", digest) == HashedRoute("z", digest) == short


def test_hashed_and_plain_routes_never_equal() -> None:
    plain = PlainRoute.of(Foo, PATH)
    hashed = plain.hashed()
    assert plain != hashed
    assert len({plain, hashed}) == 2


def test_hashed_route_bind() -> None:
    parsed = parse_route(str(HashedRoute.of(Foo, PATH)))
    bound = parsed.bind(Foo)
    assert bound.msg_type is Foo
    assert bound == parsed
    assert bound.bind(Foo) is bound
    with pytest.raises(TypeMismatch):
        parsed.bind(int)  # type: ignore[arg-type]


def non_canonical_hash() -> str:
    """A 43-character base64url string whose last character has non-zero trailing bits."""
    canonical = sha256_b64(PLAIN_TEXT)
    last = B64URL_ALPHABET.index(canonical[-1])
    # 43 characters carry 258 bits for 256: the last character's low two bits must be 0.
    assert last & 0b11 == 0
    bad = canonical[:-1] + B64URL_ALPHABET[last | 0b01]
    assert bad != canonical
    # The same bytes decode from both strings, so only one of them can be canonical.
    assert base64.urlsafe_b64decode(bad + "=") == base64.urlsafe_b64decode(canonical + "=")
    return bad


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("p#short", "not 43 characters"),
        ("p#", "not 43 characters"),
        ("#", "not 43 characters"),
        ("p#" + "A" * 42, "not 43 characters"),
        ("p#" + "A" * 44, "not 43 characters"),
        ("p#" + "A" * 41 + "+A", "not 43 characters"),
        ("p#" + "A" * 41 + "/A", "not 43 characters"),
        ("p#" + "A" * 42 + "=", "not 43 characters"),
        ("p#" + "A" * 41 + "=" * 2, "not 43 characters"),
        ("p#" + "A" * 41 + " A", "not 43 characters"),
        ("p#" + "A" * 42 + "B", "not the canonical encoding"),
        ("p#" + "A" * 42 + "_", "not the canonical encoding"),
    ],
)
def test_malformed_hashes_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(RouteError, match=problem):
        parse_route(text)


def test_non_canonical_hash_is_rejected() -> None:
    bad = non_canonical_hash()
    with pytest.raises(RouteError, match="not the canonical encoding"):
        parse_route("robot#" + bad)
    with pytest.raises(RouteError, match="not the canonical encoding"):
        HashedRoute("robot", bad)
    # The all-zero hash is canonical: 'A' * 43.
    assert parse_route("#" + "A" * 43).id == "A" * 43


@pytest.mark.parametrize("prefix", ["a..b", ".a", "a b", "a*", "a.**"])
def test_parsed_hashed_route_prefix_is_validated(prefix: str) -> None:
    with pytest.raises(RouteError, match="prefix"):
        parse_route(f"{prefix}#{sha256_b64(PLAIN_TEXT)}")


def test_hashed_route_string_never_exceeds_max_length() -> None:
    """Every route string the library produces must be one that parse_route accepts.

    A plain route within MAX_ROUTE_LENGTH may have a long path; hashing it with that path (or a
    long part of it) as the visible prefix yields ``prefix#hash``, 44 characters longer than the
    prefix.  Either the constructor refuses it, or the string must parse back.
    """
    path = "a" * (MAX_ROUTE_LENGTH - len("dndm.test.Foo@"))
    assert len(str(PlainRoute.of(Foo, path))) == MAX_ROUTE_LENGTH
    try:
        hashed = HashedRoute.of(Foo, path, prefix=path)
    except RouteError:
        return
    assert parse_route(str(hashed)) == hashed


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

IDENT_START = string.ascii_letters + "_"
IDENT_REST = IDENT_START + string.digits

identifiers = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(IDENT_START),
    st.text(alphabet=IDENT_REST, max_size=8),
)
type_names = st.lists(identifiers, min_size=1, max_size=4).map(".".join)

segment_chars = st.characters(
    categories=("Lu", "Ll", "Lt", "Lo", "Nd"),
    include_characters="-_:",
)
segments = st.text(alphabet=segment_chars, min_size=1, max_size=10)
segment_lists = st.lists(segments, min_size=1, max_size=8)
paths = segment_lists.map(".".join)
secrets = st.none() | st.binary(max_size=32)

PROPS = settings(max_examples=200, deadline=None)


@PROPS
@given(type_name=type_names, path=paths)
def test_plain_route_round_trips(type_name: str, path: str) -> None:
    route = PlainRoute(type_name, path)
    text = str(route)
    assert text == f"{type_name}@{path}"
    parsed = parse_route(text)
    assert isinstance(parsed, PlainRoute)
    assert parsed == route
    assert hash(parsed) == hash(route)
    assert str(parsed) == text
    assert parsed.type_name == type_name
    assert parsed.path == path
    assert parsed.segments == tuple(path.split("."))


@PROPS
@given(type_name=type_names, parts=segment_lists, data=st.data(), secret=secrets)
def test_hashed_route_round_trips(
    type_name: str, parts: list[str], data: st.DataObject, secret: bytes | None
) -> None:
    path = ".".join(parts)
    shown = data.draw(st.integers(min_value=0, max_value=len(parts)), label="shown")
    prefix = ".".join(parts[:shown])
    plain = PlainRoute(type_name, path)
    hashed = plain.hashed(prefix=prefix, secret=secret)
    text = str(hashed)
    assert text == f"{prefix}#{hashed.digest}"
    expected = sha256_b64(str(plain)) if secret is None else hmac_b64(secret, str(plain))
    assert hashed.digest == expected
    parsed = parse_route(text)
    assert isinstance(parsed, HashedRoute)
    assert parsed == hashed
    assert hash(parsed) == hash(hashed)
    assert str(parsed) == text
    assert parsed.prefix == prefix
    assert str(parse_route(str(parsed))) == text


@PROPS
@given(type_name=type_names, path=paths, other=paths, secret=secrets)
def test_verify_property(type_name: str, path: str, other: str, secret: bytes | None) -> None:
    hashed = PlainRoute(type_name, path).hashed(secret=secret)
    assert hmac.compare_digest(hashed.digest, route_hash(f"{type_name}@{path}", secret))
    assert (hashed.digest == route_hash(f"{type_name}@{other}", secret)) == (other == path)


route_like_text = st.text(alphabet=st.sampled_from(list("ab.@#*_-+/= :\t\x00\x80é1A")), max_size=60)
hash_like_text = st.builds(
    lambda prefix, digest: f"{prefix}#{digest}",
    st.text(alphabet="ab.", max_size=6),
    st.text(alphabet=B64URL_ALPHABET, min_size=42, max_size=44),
)


def assert_parses_consistently(text: str) -> None:
    try:
        route = parse_route(text)
    except RouteError:
        return
    assert isinstance(route, PlainRoute | HashedRoute)
    assert str(route) == text
    again = parse_route(str(route))
    assert again == route
    assert str(again) == str(route)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_any_text_parses_or_raises_route_error(text: str) -> None:
    assert_parses_consistently(text)


@PROPS
@given(text=route_like_text | hash_like_text)
def test_route_like_text_parses_or_raises_route_error(text: str) -> None:
    assert_parses_consistently(text)


@PROPS
@given(digest=st.text(alphabet=B64URL_ALPHABET, min_size=43, max_size=43))
def test_a_43_char_hash_is_accepted_iff_canonical(digest: str) -> None:
    if B64URL_ALPHABET.index(digest[-1]) & 0b11 == 0:
        assert parse_route("#" + digest).id == digest
    else:
        with pytest.raises(RouteError, match="not the canonical encoding"):
            parse_route("#" + digest)
