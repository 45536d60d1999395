"""The layout is the architecture: imports point downward only, with no cycle of any kind.

Every import counts, wherever it is written: at module level, inside a function, or under
``TYPE_CHECKING``.  Two graphs are checked, the graph of modules and the graph of *units* (a
subpackage of ``dndm_p2p``, a module at the top of ``dndm_p2p``, or a whole top-level package), and
every edge between units must point down the layer table below.  ``import dndm_p2p`` must load no
py-libp2p module, so in-process users never pay for it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocols", "dht", "nat", "dndm_p2p", "simnet")

#: Units from the bottom up; a unit may import units of a lower rank only (and itself).
LAYERS: dict[str, int] = {
    "protocols": 0,
    "dht": 1,
    "nat": 1,
    "dndm_p2p.errors": 2,
    "dndm_p2p.nurseries": 2,
    "dndm_p2p.privatefiles": 2,
    "dndm_p2p.core": 3,
    "dndm_p2p.host": 4,
    "dndm_p2p.discovery": 5,
    "dndm_p2p.config": 6,
    "dndm_p2p.node": 7,
    "dndm_p2p.demo": 8,
    "dndm_p2p.aio": 8,
    "dndm_p2p.sync": 8,
    "dndm_p2p": 9,
    "dndm_p2p.proto": 2,
    "dndm_p2p.cli": 10,
    "simnet": 11,
}


def _module_files() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name.endswith("_pb2.py"):
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


MODULES: dict[str, Path] = dict(_module_files())


def _owner(name: str) -> str | None:
    """The project module that ``name`` (a module or an attribute of one) refers to."""
    while name and name not in MODULES:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name or None


def _imports(module: str, path: Path | None = None) -> set[str]:
    """Every project module ``module`` imports, anywhere in its source."""
    path = path or MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            owner = _owner(target)
            if owner is not None and owner != module:
                found.add(owner)
    return found


GRAPH: dict[str, set[str]] = {module: _imports(module) for module in MODULES}


def _unit(module: str) -> str:
    top = module.split(".")[0]
    if top != "dndm_p2p":
        return top
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else "dndm_p2p"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that starts and ends at the same node), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_every_module_is_seen() -> None:
    assert "dndm_p2p.core.router" in MODULES
    assert "dndm_p2p.node.node" in MODULES
    assert len(MODULES) > 60


def test_the_checker_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dndm_p2p.node.node import Node\n"
        "def later():\n    from ..core import router\n    import simnet.net\n"
    )
    found = _imports("dndm_p2p.discovery.probe", source)
    assert found == {"dndm_p2p.node.node", "dndm_p2p.core.router", "simnet.net"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_modules() -> None:
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_among_packages() -> None:
    units: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        edges = units.setdefault(_unit(module), set())
        edges.update(_unit(t) for t in targets if _unit(t) != _unit(module))
    cycle = _cycle(units)
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])


def test_imports_point_downward_only() -> None:
    unknown = sorted({_unit(m) for m in MODULES} - LAYERS.keys())
    assert not unknown, f"units missing from the layer table: {unknown}"
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _unit(target) != _unit(module) and LAYERS[_unit(target)] >= LAYERS[_unit(module)]
    )
    assert not upward, "imports that do not point downward:\n" + "\n".join(upward)


def _run(code: str) -> str:
    """What a fresh interpreter running ``code`` in the repository prints."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    "statement",
    [
        "import dndm_p2p",
        "import dndm_p2p.core.router",
        "from dndm_p2p import Router, NodeConfig, PlainRoute",
        "import dndm_p2p.config",
    ],
)
def test_the_in_process_library_loads_no_libp2p(statement: str) -> None:
    code = (
        f"{statement}\nimport sys\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'libp2p')))"
    )
    loaded = _run(code).strip()
    assert loaded == "", f"{statement!r} loaded py-libp2p: {loaded[:200]}"


def test_the_node_is_still_served_by_the_top_level_package() -> None:
    code = "import dndm_p2p, sys\nprint(dndm_p2p.Node.__module__, 'libp2p' in sys.modules)"
    out = _run(code).split()
    assert out == ["dndm_p2p.node.node", "True"]


def test_top_level_of_dndm_p2p_stays_small() -> None:
    top = [p for p in (ROOT / "dndm_p2p").glob("*.py")]
    assert len(top) <= 12, sorted(p.name for p in top)


def test_tests_share_code_through_support_and_fixtures_only() -> None:
    """No test imports ``conftest`` or another test module: shared code is in tests/support."""
    offending = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                last = name.split(".")[-1]
                if name.startswith("tests.") and (last == "conftest" or last.startswith("test_")):
                    offending.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offending, "\n".join(offending)
