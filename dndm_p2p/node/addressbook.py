"""The address book: where the peers a node has met can be reached, kept across restarts.

::

    book = AddressBook.load(path)               # empty if the file does not exist yet
    if book.problem:                            # the file was corrupt: set aside, book empty
        report(book.problem)
    book.record(peer_id, ["/ip4/10.0.0.7/tcp/4001"])
    book.addresses(peer_id)                     # ("/ip4/10.0.0.7/tcp/4001",)
    book.save()                                 # or: nursery.start(book.autosave)

The file is a serialized ``dndm.v1.AddressBookFile`` (``protocols/v1/addressbook.proto``),
written whole to a temporary file in the same directory, flushed to disk and renamed over the
old one, so a crash leaves either the old book or the new one, never half of one.  Mode 0600:
the peers a node has met are nobody else's business.

Bounded: at most ``max_peers`` peers (the one seen longest ago is forgotten first) and
``max_addrs`` addresses per peer (the most recently reported kept).

A book is a cache (losing it costs only rediscovery), so a **corrupt file does not stop the
node**: :meth:`AddressBook.load` renames it to ``<name>.corrupt`` (replacing an older one),
starts empty, and says what happened in :attr:`AddressBook.problem`, which the node reports as
a warning event.  Entries that are invalid on their own (a bad peer id or multiaddr) are
dropped and counted there too.  A file that cannot be read at all (permission denied, a
directory) is a :class:`ConfigError`: saving would fail as well, and the user must fix it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import multihash
import trio
from google.protobuf.message import DecodeError
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from dndm_p2p.errors import ConfigError, DndmError, Unavailable
from dndm_p2p.privatefiles import write_private_file
from protocols.v1 import addressbook_pb2

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = ["DEFAULT_MAX_ADDRS", "DEFAULT_MAX_PEERS", "FILE_VERSION", "AddressBook"]

#: Most peers a book keeps by default.
DEFAULT_MAX_PEERS = 1000
#: Most addresses kept per peer by default.
DEFAULT_MAX_ADDRS = 16
#: Version of the file format written (``AddressBookFile.version``).
FILE_VERSION = 1
#: Largest file read (1000 peers of 16 addresses take well under 2 MiB).
_MAX_FILE_SIZE = 64 * 1024 * 1024


class _Entry:
    __slots__ = ("addrs", "last_seen")

    def __init__(self, addrs: tuple[str, ...], last_seen: float) -> None:
        self.addrs = addrs
        self.last_seen = last_seen


def _check_peer(peer: str) -> str:
    """``peer`` if it is a canonical base58 peer id (a multihash), else ConfigError."""
    try:
        raw = ID.from_base58(peer).to_bytes()
        multihash.decode(raw)  # checks the hash code and the digest length
        valid = ID(raw).to_base58() == peer
    except Exception:  # base58 and multihash raise several unrelated types
        valid = False
    if not valid:
        raise ConfigError(f"not a peer id: {peer!r}")
    return peer


def _bare_addr(peer: str, addr: str) -> str:
    """``addr`` as a valid multiaddr string without ``/p2p/<peer>``; ConfigError if invalid."""
    try:
        parsed = Multiaddr(addr)
        owner = parsed.get_peer_id()
    except Exception:  # multiaddr raises several unrelated types
        raise ConfigError(f"not a multiaddr: {addr!r}") from None
    if owner is not None:
        if owner != peer:
            raise ConfigError(f"address {addr} belongs to {owner}, not {peer}")
        parsed = parsed.decapsulate(Multiaddr(f"/p2p/{owner}"))
    text = str(parsed)
    if not text:
        raise ConfigError(f"address {addr!r} has no transport part")
    return text


class AddressBook:
    """Peer id -> multiaddrs and when the peer was last seen; bounded, saved atomically.

    Not thread-safe: use it from the trio thread (:meth:`save_async` and :meth:`autosave` do
    the file I/O in a worker thread on a snapshot).
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        max_peers: int = DEFAULT_MAX_PEERS,
        max_addrs: int = DEFAULT_MAX_ADDRS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """An empty book, saved to ``path`` (``None``: kept in memory only)."""
        if max_peers < 1 or max_addrs < 1:
            raise ConfigError("an address book keeps at least one peer and one address")
        self.path = Path(path) if path is not None else None
        self.max_peers = max_peers
        self.max_addrs = max_addrs
        self._clock = clock
        #: Oldest first: the first entry is the next to be evicted.
        self._entries: dict[str, _Entry] = {}
        #: What was wrong with the file when it was loaded (``None``: nothing).
        self.problem: str | None = None
        #: True when the book changed since it was loaded or last saved.
        self.dirty = False

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: Path | str,
        *,
        max_peers: int = DEFAULT_MAX_PEERS,
        max_addrs: int = DEFAULT_MAX_ADDRS,
        clock: Callable[[], float] = time.time,
    ) -> AddressBook:
        """The book saved at ``path``; an empty one if there is no file yet.

        A corrupt file is renamed to ``<name>.corrupt`` and the book starts empty, with
        :attr:`problem` saying so.  Raises :class:`ConfigError` if the file exists but cannot
        be read (permissions, a directory).
        """
        book = cls(Path(path), max_peers=max_peers, max_addrs=max_addrs, clock=clock)
        assert book.path is not None
        try:
            with open(book.path, "rb") as file:
                data = file.read(_MAX_FILE_SIZE + 1)
        except FileNotFoundError:
            return book
        except OSError as exc:
            raise ConfigError(f"cannot read the address book {book.path}: {exc}") from exc
        problem = book._parse(data)
        if problem is not None:
            book._set_aside(problem)
        return book

    def _parse(self, data: bytes) -> str | None:
        """Fill the book from the file's bytes; a reason if the whole file is unusable."""
        if len(data) > _MAX_FILE_SIZE:
            return f"larger than {_MAX_FILE_SIZE} bytes"
        stored = addressbook_pb2.AddressBookFile()
        try:
            stored.ParseFromString(data)
        except DecodeError as exc:
            return f"not an address book ({exc})"
        if stored.version != FILE_VERSION:
            return f"format version {stored.version}, this version of dndm reads {FILE_VERSION}"
        valid: list[tuple[float, str, tuple[str, ...]]] = []
        dropped = 0
        for entry in stored.entries:
            try:
                peer = _check_peer(entry.peer)
                addrs = tuple(dict.fromkeys(_bare_addr(peer, a) for a in entry.addrs))
            except ConfigError:
                dropped += 1
                continue
            if addrs:
                valid.append((entry.last_seen_ms / 1000, peer, addrs[: self.max_addrs]))
        valid.sort()  # oldest first, as the book keeps them
        for seen, peer, addrs in valid:
            self._entries.pop(peer, None)
            self._entries[peer] = _Entry(addrs, seen)
        self._evict()
        if dropped:
            self.problem = f"address book {self.path}: {dropped} invalid entries dropped"
            self.dirty = True
        return None

    def _set_aside(self, reason: str) -> None:
        assert self.path is not None
        self._entries.clear()
        aside = self.path.with_name(self.path.name + ".corrupt")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise ConfigError(
                f"the address book {self.path} is corrupt ({reason}) and cannot be moved "
                f"aside: {exc}"
            ) from exc
        self.problem = (
            f"address book {self.path} is corrupt ({reason}): moved to {aside}, starting empty"
        )

    # -- contents ---------------------------------------------------------------------------

    def record(self, peer: str, addrs: Iterable[str]) -> None:
        """Remember that ``peer`` was seen now at ``addrs`` (with or without ``/p2p/<peer>``).

        The new addresses come first, then those known before (at most :attr:`max_addrs`).
        Raises :class:`ConfigError` for a malformed peer id or multiaddr (nothing recorded).
        """
        _check_peer(peer)
        fresh = [_bare_addr(peer, addr) for addr in addrs]
        old = self._entries.pop(peer, None)
        merged = tuple(dict.fromkeys([*fresh, *(old.addrs if old else ())]))[: self.max_addrs]
        if not merged:
            return
        self._entries[peer] = _Entry(merged, self._clock())
        self.dirty = True
        self._evict()

    def forget(self, peer: str) -> None:
        """Forget ``peer`` (nothing if unknown)."""
        if self._entries.pop(peer, None) is not None:
            self.dirty = True

    def addresses(self, peer: str) -> tuple[str, ...]:
        """The known multiaddrs of ``peer`` without ``/p2p``, most recent first (maybe ``()``)."""
        entry = self._entries.get(peer)
        return entry.addrs if entry is not None else ()

    def dial_addresses(self, peer: str) -> tuple[str, ...]:
        """The known multiaddrs of ``peer`` ending in ``/p2p/<peer>``, ready to dial."""
        return tuple(f"{addr}/p2p/{peer}" for addr in self.addresses(peer))

    def last_seen(self, peer: str) -> float | None:
        """When ``peer`` was last recorded (Unix time in seconds), or ``None``."""
        entry = self._entries.get(peer)
        return entry.last_seen if entry is not None else None

    def peers(self) -> list[str]:
        """Every peer in the book, most recently seen first."""
        return list(reversed(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        while len(self._entries) > self.max_peers:
            del self._entries[next(iter(self._entries))]
            self.dirty = True

    # -- saving -----------------------------------------------------------------------------

    def _snapshot(self) -> bytes:
        stored = addressbook_pb2.AddressBookFile(version=FILE_VERSION)
        for peer in self.peers():
            entry = self._entries[peer]
            stored.entries.add(
                peer=peer, addrs=entry.addrs, last_seen_ms=round(entry.last_seen * 1000)
            )
        return stored.SerializeToString()

    def save(self) -> None:
        """Write the book to its file atomically (blocking I/O: see :meth:`save_async`).

        Raises :class:`ConfigError` when the book has no path or the directory cannot be
        written for lack of permission, :class:`Unavailable` for other I/O failures.
        """
        data = self._snapshot()
        self.dirty = False
        try:
            self._write(data)
        except BaseException:
            self.dirty = True
            raise

    async def save_async(self) -> None:
        """:meth:`save` with the file I/O in a worker thread (the snapshot is taken first)."""
        data = self._snapshot()
        self.dirty = False
        try:
            await trio.to_thread.run_sync(self._write, data)
        except BaseException:
            self.dirty = True
            raise

    def _write(self, data: bytes) -> None:
        path = self.path
        if path is None:
            raise ConfigError("this address book has no file to be saved to")
        try:
            write_private_file(path, data)
        except PermissionError as exc:
            raise ConfigError(f"cannot write the address book {path}: {exc}") from exc
        except OSError as exc:
            raise Unavailable(f"cannot write the address book {path}: {exc}") from exc

    async def autosave(
        self,
        interval: float = 30.0,
        *,
        on_error: Callable[[DndmError], None] | None = None,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Save every ``interval`` seconds when the book changed, and once more when cancelled.

        A failed save is passed to ``on_error`` (and retried at the next interval); without
        ``on_error`` it ends this task with the error.
        """
        task_status.started()
        try:
            while True:
                await trio.sleep(interval)
                if self.dirty:
                    await self._save_reporting(on_error)
        finally:
            if self.dirty:
                with trio.CancelScope(shield=True):
                    await self._save_reporting(on_error)

    async def _save_reporting(self, on_error: Callable[[DndmError], None] | None) -> None:
        try:
            await self.save_async()
        except DndmError as exc:
            if on_error is None:
                raise
            on_error(exc)
