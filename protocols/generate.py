"""Regenerate the protobuf modules of the repository: the one regeneration command.

Usage, from anywhere (paths are resolved against the repository root)::

    python -m protocols.generate          # regenerate in place
    python -m protocols.generate --check  # exit 1 if a generated file is stale or missing

Every ``.proto`` of :data:`TARGET_DIRS` is compiled with ``grpc_tools.protoc`` and
``-I .`` from the repository root, so ``tests/proto/messages.proto`` produces
``tests/proto/messages_pb2.py`` and ``tests/proto/messages_pb2.pyi`` (the latter
by the ``protoc-gen-mypy`` plugin of mypy-protobuf, taken from the directory of
the running interpreter). The output only depends on the ``.proto`` files and
the tool versions, so re-running is byte-for-byte idempotent.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "TARGET_DIRS",
    "GenerationError",
    "check",
    "expected_outputs",
    "find_protos",
    "generate",
    "main",
]

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
"""The repository root: the protoc include root (``-I .``) and base of all outputs."""

TARGET_DIRS: tuple[tuple[str, bool], ...] = (
    ("protocols/v1", True),
    ("tests/proto", False),
    ("benchmarks/proto", False),
    ("dndm_p2p/proto", False),
)
"""Folders (relative to :data:`REPO_ROOT`) whose ``.proto`` files are compiled.

The flag says whether sub-folders are searched too. Missing folders are skipped.
"""

GENERATED_SUFFIXES: tuple[str, ...] = ("_pb2.py", "_pb2.pyi")
"""Suffixes of the files generated for each ``.proto`` file."""

FIX_COMMAND: str = "python -m protocols.generate"
"""The command that brings the generated files up to date."""


class GenerationError(RuntimeError):
    """protoc or the mypy plugin failed, or did not produce the expected files."""


def find_protos(root: Path = REPO_ROOT) -> list[Path]:
    """Return the ``.proto`` files to compile, relative to ``root``, sorted."""
    protos: set[Path] = set()
    for folder, recursive in TARGET_DIRS:
        directory = root / folder
        if not directory.is_dir():
            continue
        found = directory.rglob("*.proto") if recursive else directory.glob("*.proto")
        protos.update(path.relative_to(root) for path in found if path.is_file())
    return sorted(protos, key=lambda path: path.as_posix())


def expected_outputs(protos: Sequence[Path]) -> list[Path]:
    """Return the generated files (relative paths) that ``protos`` produce, sorted."""
    outputs = [
        proto.with_name(proto.stem + suffix) for proto in protos for suffix in GENERATED_SUFFIXES
    ]
    return sorted(outputs, key=lambda path: path.as_posix())


def _mypy_plugin() -> Path:
    """Locate ``protoc-gen-mypy`` next to the running interpreter."""
    bin_dir = Path(sys.executable).parent
    for name in ("protoc-gen-mypy", "protoc-gen-mypy.exe"):
        candidate = bin_dir / name
        if candidate.is_file():
            return candidate
    raise GenerationError(
        f"protoc-gen-mypy not found in {bin_dir}; install mypy-protobuf into this environment"
    )


def generate(out_root: Path) -> list[Path]:
    """Compile every target ``.proto`` into ``out_root``; return the generated files.

    ``out_root`` plays the role of the repository root: passing
    :data:`REPO_ROOT` regenerates in place, passing an empty directory produces a
    fresh copy to compare with. The returned paths are absolute (under
    ``out_root``) and sorted.

    Raises:
        GenerationError: if protoc fails or an expected file was not written.
    """
    out_root = Path(out_root).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    protos = find_protos(REPO_ROOT)
    if not protos:
        return []
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        ".",
        f"--plugin=protoc-gen-mypy={_mypy_plugin()}",
        f"--python_out={out_root}",
        f"--mypy_out={out_root}",
        *(proto.as_posix() for proto in protos),
    ]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise GenerationError(
            f"protoc failed with exit code {completed.returncode}:\n"
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    # Show protoc warnings (e.g. unused imports) but not the plugin's progress lines.
    warnings = [
        line
        for line in completed.stderr.splitlines()
        if line.strip() and not line.startswith("Writing mypy to ")
    ]
    if warnings:
        print("\n".join(warnings), file=sys.stderr)
    outputs = [out_root / relative for relative in expected_outputs(protos)]
    missing = [path for path in outputs if not path.is_file()]
    if missing:
        names = ", ".join(str(path) for path in missing)
        raise GenerationError(f"protoc did not produce: {names}")
    return outputs


def _orphans(root: Path, expected: set[Path]) -> list[Path]:
    """Generated-looking files in the target folders with no ``.proto`` behind them."""
    orphans: list[Path] = []
    for folder, recursive in TARGET_DIRS:
        directory = root / folder
        if not directory.is_dir():
            continue
        for suffix in GENERATED_SUFFIXES:
            pattern = f"*{suffix}"
            found = directory.rglob(pattern) if recursive else directory.glob(pattern)
            orphans.extend(
                path.relative_to(root) for path in found if path.relative_to(root) not in expected
            )
    return sorted(set(orphans), key=lambda path: path.as_posix())


def check(root: Path = REPO_ROOT) -> dict[str, list[Path]]:
    """Compare the generated files under ``root`` with a fresh generation.

    Returns a mapping from problem kind (``"stale"``, ``"missing"``, ``"orphaned"``)
    to the affected paths relative to ``root``; every list is empty when all is up
    to date. ``orphaned`` files are ``*_pb2.py[i]`` files whose ``.proto`` is gone.
    """
    problems: dict[str, list[Path]] = {"stale": [], "missing": [], "orphaned": []}
    with tempfile.TemporaryDirectory(prefix="dndm-protoc-") as tmp:
        fresh_root = Path(tmp)
        for fresh in generate(fresh_root):
            relative = fresh.relative_to(fresh_root)
            committed = root / relative
            if not committed.is_file():
                problems["missing"].append(relative)
            elif committed.read_bytes() != fresh.read_bytes():
                problems["stale"].append(relative)
        expected = set(expected_outputs(find_protos(REPO_ROOT)))
    problems["orphaned"] = _orphans(root, expected)
    return problems


def _update_in_place(root: Path) -> tuple[list[Path], list[Path]]:
    """Regenerate into a temporary folder and copy changed files into ``root``.

    Returns ``(written, unchanged)`` relative paths. Unchanged files are not
    rewritten, so their modification times are kept.
    """
    written: list[Path] = []
    unchanged: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="dndm-protoc-") as tmp:
        fresh_root = Path(tmp)
        for fresh in generate(fresh_root):
            relative = fresh.relative_to(fresh_root)
            target = root / relative
            if target.is_file() and target.read_bytes() == fresh.read_bytes():
                unchanged.append(relative)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh, target)
            written.append(relative)
    return written, unchanged


def _report_check(root: Path) -> int:
    """Run :func:`check` and print its findings; return the exit code."""
    problems = check(root)
    bad = [(kind, path) for kind, paths in problems.items() for path in paths]
    if not bad:
        print("generated protobuf files are up to date")
        return 0
    for kind, path in bad:
        print(f"{kind}: {path.as_posix()}", file=sys.stderr)
    print(f"generated protobuf files are out of date; run: {FIX_COMMAND}", file=sys.stderr)
    return 1


def _report_update(root: Path) -> int:
    """Regenerate in place and print what changed; return the exit code."""
    written, unchanged = _update_in_place(root)
    for path in written:
        print(f"wrote {path.as_posix()}")
    print(f"{len(written)} file(s) written, {len(unchanged)} unchanged")
    for path in _orphans(root, set(expected_outputs(find_protos(REPO_ROOT)))):
        print(f"warning: orphaned generated file (no .proto): {path.as_posix()}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the process exit code.

    Exit codes: 0 = success / up to date, 1 = ``--check`` found stale, missing or
    orphaned files, 2 = protoc or the mypy plugin failed.
    """
    parser = argparse.ArgumentParser(
        prog="python -m protocols.generate",
        description="Regenerate the *_pb2.py / *_pb2.pyi modules from the .proto files.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a generated file is stale, missing or orphaned",
    )
    args = parser.parse_args(argv)
    try:
        return _report_check(REPO_ROOT) if args.check else _report_update(REPO_ROOT)
    except GenerationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
