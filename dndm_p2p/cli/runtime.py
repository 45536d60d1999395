"""Where admin sockets live: the per-user runtime directory and the names of the sockets in it.

``dndm node`` serves its admin socket, unless told where, in :func:`runtime_directory`, named
after its key file (``<key stem>-<hash of its path>.sock``), else its name (``<name>.sock``),
else its process id (``node-<pid>.sock``).  ``dndm routes`` and ``dndm peers`` find it by the
same rule from ``--key`` or ``--name``, or with neither, take the only socket there.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path

from dndm_p2p.errors import ConfigError, Unavailable

__all__ = ["default_admin_socket", "find_admin_socket", "runtime_directory"]


def runtime_directory() -> Path:
    """The per-user directory of admin sockets: ``$XDG_RUNTIME_DIR/dndm``, else
    ``<tmp>/dndm-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "dndm"
    return Path(tempfile.gettempdir()) / f"dndm-{os.getuid()}"


def default_admin_socket(key_file: Path | None, name: str) -> Path:
    """Where ``dndm node`` serves its admin socket when not told (see the module docstring).

    Raises :class:`ConfigError` if the runtime directory exists but is not this user's own
    private directory (anyone else could listen there in the node's place).
    """
    directory = runtime_directory()
    _check_private(directory)
    if key_file is not None:
        digest = hashlib.sha256(os.fsencode(key_file.resolve())).hexdigest()[:8]
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", key_file.stem)[:40] or "key"
        return directory / f"{stem}-{digest}.sock"
    if name:
        return directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)[:40]}.sock"
    return directory / f"node-{os.getpid()}.sock"


def find_admin_socket(admin_socket: Path | None, key_file: Path | None, name: str) -> Path:
    """The admin socket a client should ask: ``admin_socket`` if given, else the one named
    after ``key_file`` or ``name``, else the only socket in the runtime directory.

    Raises :class:`Unavailable` if the directory holds no socket, :class:`ConfigError` if it
    holds several or cannot be listed.
    """
    if admin_socket is not None:
        return Path(admin_socket)
    if key_file is not None or name:
        return default_admin_socket(key_file, name)
    directory = runtime_directory()
    try:
        found = sorted(p for p in directory.iterdir() if p.is_socket())
    except FileNotFoundError:
        found = []
    except OSError as exc:
        raise ConfigError(f"cannot list the runtime directory {directory}: {exc}") from exc
    if not found:
        raise Unavailable(
            f"no node's admin socket in {directory}: is a 'dndm node' running? (or pass "
            "--admin-socket, --key or --name)"
        )
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise ConfigError(
            f"several admin sockets in {directory} ({listed}): choose one with "
            "--admin-socket, --key or --name"
        )
    return found[0]


def _check_private(directory: Path) -> None:
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return  # created private (0700) when the node starts
    except OSError as exc:
        raise ConfigError(f"cannot use the runtime directory {directory}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{directory} is not a directory: pass --admin-socket")
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError(
            f"{directory} is not a private directory of this user (owner {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):o}): pass --admin-socket"
        )
