"""Files only their owner may read, written so that a crash leaves the old file or the new one.

Used for the identity key file and the address book: the bytes go to a temporary file in the
same directory (created with mode 0600), are flushed to disk, and the temporary file is then
moved into place; the directory entry is flushed too where the platform allows it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["sync_directory", "write_private_file"]


def write_private_file(
    path: Path, data: bytes, *, place: Callable[[Path, Path], None] = os.replace
) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600, in a directory that must exist.

    ``place(temp, path)`` moves the finished temporary file into place (by default replacing
    ``path``).  Raises :class:`OSError` (:class:`FileNotFoundError` when the directory is
    missing: a mistyped path never creates directories), or whatever ``place`` raises; the
    temporary file never outlives the call.
    """
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            if os.name == "posix":
                os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        place(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable, where the platform allows it (best effort)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse to sync a directory; the rename is done anyway
    finally:
        os.close(fd)
