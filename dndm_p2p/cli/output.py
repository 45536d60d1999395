"""What the commands print: JSON lines, tables, and error lines."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, TextIO

__all__ = ["JsonLines", "print_error", "print_records", "silence_stdout"]


class JsonLines:
    """Writes records to one stream, one JSON object per line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, record: dict[str, Any], *, flush: bool = True) -> None:
        """Write ``record`` as one line; flushed unless ``flush`` is false."""
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        if flush:
            self._stream.flush()

    def flush(self) -> None:
        """Flush the lines written so far."""
        self._stream.flush()


def print_records(
    records: list[dict[str, Any]], columns: Sequence[str], *, json_lines: bool
) -> None:
    """Print ``records`` on stdout as JSON lines, or as a table of ``columns`` under a header
    line (None as ``-``, booleans as yes/no, lists joined by commas)."""
    if json_lines:
        out = JsonLines(sys.stdout)
        for record in records:
            out.write(record, flush=False)
        out.flush()
        return
    rows = [[column.upper() for column in columns]]
    for record in records:
        rows.append([_cell(record[column]) for column in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(line.rstrip())
    sys.stdout.flush()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value) or "-"
    return str(value)


def print_error(message: str) -> None:
    """Print ``dndm: error: <message>`` on stderr (nothing if stderr is gone)."""
    with suppress(OSError, ValueError):
        print(f"dndm: error: {message}", file=sys.stderr, flush=True)


def silence_stdout() -> None:
    """Point stdout at the null device, so that nothing more fails writing to a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
