"""What the py-libp2p fixes must never change: the classes and modules they touch.

:func:`snapshot` records every attribute of each class in
:data:`protocols.libp2p_fixes.TOUCHED` and every callable of each module there; :func:`changes`
compares two snapshots.  ``tests/conftest.py`` fails any test after which they differ.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from protocols.libp2p_fixes import TOUCHED

__all__ = ["Snapshot", "changes", "snapshot"]

#: ``"module"`` or ``"module:Class"`` -> attribute name -> the object it held.
Snapshot = dict[str, dict[str, object]]

_OURS = ("protocols", "dht", "nat", "dndm_p2p", "simnet", "tests")


def _target(name: str) -> tuple[ModuleType, type | None]:
    module_name, _, class_name = name.partition(":")
    module = importlib.import_module(module_name)
    return module, getattr(module, class_name) if class_name else None


def snapshot() -> Snapshot:
    """The attributes of every touched py-libp2p class, and the callables of every module."""
    taken: Snapshot = {}
    for name in TOUCHED:
        module, cls = _target(name)
        if cls is not None:
            taken[name] = dict(vars(cls))
        else:
            taken[name] = {k: v for k, v in vars(module).items() if callable(v)}
    return taken


def _defined_by_us(value: object) -> bool:
    func = getattr(value, "__func__", value)
    return str(getattr(func, "__module__", "") or "").split(".")[0] in _OURS


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """``Target.attribute`` names added, removed or rebound between two snapshots, and any
    attribute of a touched class or module that one of our packages defined."""
    found: list[str] = []
    for name, old in before.items():
        new = after.get(name, {})
        for attr in sorted(old.keys() | new.keys()):
            if attr not in new or attr not in old or new[attr] is not old[attr]:
                found.append(f"{name}.{attr}")
            elif _defined_by_us(new[attr]):
                found.append(f"{name}.{attr} (defined by {new[attr]!r})")
    return found
