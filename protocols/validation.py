"""Checks of configuration values: durations, counts, sizes, flags, choices, string lists.

Every config class of the project (``NodeConfig``, ``HostConfig``, ``NatConfig``,
``DhtConfig``, ``GossipConfig`` ...) checks its fields once, in ``__post_init__``, with these
functions.  Each one reads the field from the config object, and on a bad value raises a
:class:`~protocols.errors.ConfigError` whose ``field`` is the qualified field name and whose
message starts with it::

    NodeConfig.ping_interval: must be a number of seconds > 0, not -1

Bounds are keyword arguments that read as the comparison they make: ``above`` (``>``),
``at_least`` (``>=``), ``at_most`` (``<=``) and ``below`` (``<``).  Numbers are never
booleans; durations are finite ints or floats, counts and sizes are ints.

:func:`bound_problem` is the same check as text, for parsers that name fields their own way
(the simulator's scenario files).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, TypeVar

from protocols.errors import ConfigError

__all__ = [
    "bound_problem",
    "check_choice",
    "check_count",
    "check_flag",
    "check_instance",
    "check_rate",
    "check_seconds",
    "check_size",
    "check_strings",
    "field_name",
    "invalid",
]

T = TypeVar("T")


def field_name(config: object, name: str) -> str:
    """The qualified name of field ``name`` of ``config``: ``"NodeConfig.ping_interval"``."""
    return f"{type(config).__name__}.{name}"


def invalid(config: object, name: str, problem: str) -> ConfigError:
    """The error for field ``name`` of ``config``: ``"<Class>.<name>: <problem>"``."""
    qualified = field_name(config, name)
    return ConfigError(f"{qualified}: {problem}", field=qualified)


def bound_problem(
    value: object,
    what: str,
    *,
    integer: bool = False,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> str | None:
    """Why ``value`` is not ``what`` within the bounds (``"must be <what> > 0, not -1"``), or
    None when it is.

    ``integer`` asks for an int; otherwise an int or a finite float.  Booleans never pass.
    """
    bounds = [
        f"{sign} {_shown(limit)}"
        for sign, limit in ((">", above), (">=", at_least), ("<=", at_most), ("<", below))
        if limit is not None
    ]
    wanted = f"must be {what}" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{wanted}, not {value!r}"
    ok = (
        (isinstance(value, int) or not integer)
        and math.isfinite(value)
        and (above is None or value > above)
        and (at_least is None or value >= at_least)
        and (at_most is None or value <= at_most)
        and (below is None or value < below)
    )
    return None if ok else f"{wanted}, not {value!r}"


def _shown(limit: float) -> str:
    """A bound as written: ``4194304``, ``0.01``."""
    return str(limit) if isinstance(limit, int) else f"{limit:g}"


def _check_bounded(config: object, name: str, what: str, integer: bool, **bounds: Any) -> Any:
    value = getattr(config, name)
    problem = bound_problem(value, what, integer=integer, **bounds)
    if problem is not None:
        raise invalid(config, name, problem)
    return value


def check_seconds(
    config: object,
    name: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> float:
    """Field ``name`` of ``config`` as a finite number of seconds within the bounds.

    :raises ConfigError: it is not (``"<Class>.<name>: must be a number of seconds > 0, ..."``).
    """
    value: float = _check_bounded(
        config,
        name,
        "a number of seconds",
        False,
        above=above,
        at_least=at_least,
        at_most=at_most,
        below=below,
    )
    return value


def check_rate(config: object, name: str, *, above: float = 0) -> float:
    """Field ``name`` of ``config`` as a finite rate (events per second) above ``above``.

    :raises ConfigError: it is not (``"<Class>.<name>: must be a rate per second > 0, ..."``).
    """
    value: float = _check_bounded(config, name, "a rate per second", False, above=above)
    return value


def check_count(
    config: object, name: str, *, at_least: int | None = None, at_most: int | None = None
) -> int:
    """Field ``name`` of ``config`` as an integer (not a bool) within the bounds.

    :raises ConfigError: it is not (``"<Class>.<name>: must be an integer >= 1, not 0"``).
    """
    value: int = _check_bounded(
        config, name, "an integer", True, at_least=at_least, at_most=at_most
    )
    return value


def check_size(
    config: object, name: str, *, at_least: int | None = None, at_most: int | None = None
) -> int:
    """Field ``name`` of ``config`` as a number of bytes (an int, not a bool) within the bounds.

    :raises ConfigError: it is not (``"<Class>.<name>: must be a number of bytes >= 1024 ..."``).
    """
    value: int = _check_bounded(
        config, name, "a number of bytes", True, at_least=at_least, at_most=at_most
    )
    return value


def check_flag(config: object, name: str) -> bool:
    """Field ``name`` of ``config``, which must be a bool.

    :raises ConfigError: it is not.
    """
    value = getattr(config, name)
    if not isinstance(value, bool):
        raise invalid(config, name, f"must be a bool, not {value!r}")
    return value


def check_choice(config: object, name: str, choices: Collection[str]) -> str:
    """Field ``name`` of ``config``, which must be one of ``choices``.

    :raises ConfigError: it is not.
    """
    value = getattr(config, name)
    if not isinstance(value, str) or value not in choices:
        shown = ", ".join(repr(choice) for choice in choices)
        raise invalid(config, name, f"must be one of {shown}, not {value!r}")
    return value


def check_instance(config: object, name: str, kind: type[T], *, optional: bool = False) -> T | None:
    """Field ``name`` of ``config``, which must be a ``kind`` (or None when ``optional``).

    :raises ConfigError: it is not.
    """
    value = getattr(config, name)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        wanted = kind.__name__ + (" or None" if optional else "")
        raise invalid(config, name, f"must be a {wanted}, not {value!r}")
    return value


def check_strings(config: object, name: str) -> tuple[str, ...]:
    """Field ``name`` of ``config`` as a tuple of strings, stored back into the field.

    The field may be given as any iterable of strings; it is replaced by a tuple (frozen
    dataclasses included).

    :raises ConfigError: it is one string, not an iterable, or holds something else.
    """
    value = getattr(config, name)
    if isinstance(value, str | bytes):
        raise invalid(config, name, f"is a sequence of strings, not one string: {value!r}")
    try:
        items = tuple(value)
    except TypeError:
        raise invalid(config, name, f"is a sequence of strings, not {value!r}") from None
    for item in items:
        if not isinstance(item, str):
            raise invalid(config, name, f"is a sequence of strings; {item!r} is not one")
    object.__setattr__(config, name, items)
    return items
