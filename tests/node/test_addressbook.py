"""The address book: persisted across restarts, atomic, bounded, and tolerant of a bad file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from dndm_p2p.errors import ConfigError, DndmError, Unavailable
from dndm_p2p.host.identity import generate_identity, peer_id_of
from dndm_p2p.node.addressbook import FILE_VERSION, AddressBook
from protocols.v1 import addressbook_pb2

PEERS = [str(peer_id_of(generate_identity())) for _ in range(6)]
A, B, C = PEERS[:3]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_missing_file_gives_an_empty_book_and_nothing_is_written_until_saved(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "peers.book"
    book = AddressBook.load(path)
    assert book.peers() == []
    assert book.problem is None
    assert not path.exists()


def test_addresses_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "peers.book"
    path.parent.mkdir()
    clock = Clock()
    book = AddressBook.load(path, clock=clock)
    book.record(A, ["/ip4/127.0.0.1/tcp/4001", f"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{A}"])
    book.record(B, ["/ip4/127.0.0.1/tcp/4002"])
    assert book.dirty
    book.save()
    assert not book.dirty
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["peers.book"]  # no temporary file left

    again = AddressBook.load(path)
    assert again.problem is None
    assert again.peers() == [B, A]  # most recently seen first
    assert again.addresses(A) == ("/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1")
    assert again.dial_addresses(B) == (f"/ip4/127.0.0.1/tcp/4002/p2p/{B}",)
    assert again.last_seen(A) == book.last_seen(A)
    assert again.addresses(C) == ()
    assert again.last_seen(C) is None


def test_new_addresses_come_first_and_old_ones_are_kept_within_the_bound(tmp_path: Path) -> None:
    book = AddressBook(tmp_path / "b", max_addrs=3)
    book.record(A, ["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"])
    book.record(A, ["/ip4/127.0.0.1/tcp/3", "/ip4/127.0.0.1/tcp/1"])
    assert book.addresses(A) == (
        "/ip4/127.0.0.1/tcp/3",
        "/ip4/127.0.0.1/tcp/1",
        "/ip4/127.0.0.1/tcp/2",
    )
    book.record(A, ["/ip4/127.0.0.1/tcp/4"])
    assert book.addresses(A) == (
        "/ip4/127.0.0.1/tcp/4",
        "/ip4/127.0.0.1/tcp/3",
        "/ip4/127.0.0.1/tcp/1",
    )


def test_the_peer_seen_longest_ago_is_evicted_first(tmp_path: Path) -> None:
    path = tmp_path / "b"
    book = AddressBook(path, max_peers=3, clock=Clock())
    for i, peer in enumerate(PEERS[:3]):
        book.record(peer, [f"/ip4/127.0.0.1/tcp/{i + 1}"])
    book.record(PEERS[0], ["/ip4/127.0.0.1/tcp/1"])  # seen again: now the most recent
    book.record(PEERS[3], ["/ip4/127.0.0.1/tcp/4"])
    assert book.peers() == [PEERS[3], PEERS[0], PEERS[2]]  # PEERS[1] was the oldest
    assert len(book) == 3
    book.save()
    # A smaller bound at load keeps the most recent ones.
    assert AddressBook.load(path, max_peers=2).peers() == [PEERS[3], PEERS[0]]


def test_invalid_input_to_record_is_refused_and_nothing_is_recorded(tmp_path: Path) -> None:
    book = AddressBook(tmp_path / "b")
    with pytest.raises(ConfigError, match="not a peer id"):
        book.record("QmNotAPeer!", ["/ip4/127.0.0.1/tcp/1"])
    with pytest.raises(ConfigError, match="not a multiaddr"):
        book.record(A, ["/ip4/127.0.0.1/tcp/1", "/ip4/300.0.0.1/tcp/1"])
    with pytest.raises(ConfigError, match=f"belongs to {B}"):
        book.record(A, [f"/ip4/127.0.0.1/tcp/1/p2p/{B}"])
    assert book.peers() == []
    assert not book.dirty


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xff\xff\xff garbage", "not an address book"),
        (
            addressbook_pb2.AddressBookFile(version=FILE_VERSION + 1).SerializeToString(),
            f"format version {FILE_VERSION + 1}",
        ),
        (b"", "format version 0"),
    ],
)
def test_a_corrupt_file_is_set_aside_and_the_book_starts_empty(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "peers.book"
    path.write_bytes(content)
    book = AddressBook.load(path)
    assert book.peers() == []
    assert book.problem is not None
    assert reason in book.problem
    assert "moved to" in book.problem
    assert not path.exists()
    assert (tmp_path / "peers.book.corrupt").read_bytes() == content  # kept for inspection
    book.record(A, ["/ip4/127.0.0.1/tcp/1"])
    book.save()
    assert AddressBook.load(path).peers() == [A]


def test_invalid_entries_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "peers.book"
    stored = addressbook_pb2.AddressBookFile(version=FILE_VERSION)
    stored.entries.add(peer=A, addrs=["/ip4/127.0.0.1/tcp/1"], last_seen_ms=2000)
    stored.entries.add(peer="nonsense", addrs=["/ip4/127.0.0.1/tcp/2"], last_seen_ms=3000)
    stored.entries.add(peer=B, addrs=["/not/an/addr"], last_seen_ms=4000)
    stored.entries.add(peer=C, addrs=[], last_seen_ms=5000)  # nothing to dial: skipped
    path.write_bytes(stored.SerializeToString())
    book = AddressBook.load(path)
    assert book.peers() == [A]
    assert book.problem is not None
    assert "2 invalid entries dropped" in book.problem
    assert path.exists()  # the file itself was fine


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "peers.book"
    path.write_bytes(b"")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read the address book"):
        AddressBook.load(path)


def test_a_directory_in_the_way_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "peers.book").mkdir()
    with pytest.raises(ConfigError, match="cannot read the address book"):
        AddressBook.load(tmp_path / "peers.book")


def test_a_failed_save_leaves_the_old_file_and_the_book_dirty(tmp_path: Path) -> None:
    path = tmp_path / "peers.book"
    book = AddressBook(path)
    book.record(A, ["/ip4/127.0.0.1/tcp/1"])
    book.save()
    before = path.read_bytes()
    book.record(B, ["/ip4/127.0.0.1/tcp/2"])
    book.path = tmp_path / "peers.book" / "below-a-file"  # its parent is a file: cannot write
    with pytest.raises(DndmError, match="cannot write the address book"):
        book.save()
    assert book.dirty
    assert path.read_bytes() == before
    assert AddressBook.load(path).peers() == [A]
    with pytest.raises(ConfigError, match="no file"):
        AddressBook().save()


class WatchedBook(AddressBook):
    """An address book that tells the test when a save finished."""

    saved = trio.Event()

    async def save_async(self) -> None:
        await super().save_async()
        self.saved.set()
        self.saved = trio.Event()


async def test_autosave_saves_changes_and_once_more_when_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "peers.book"
    book = WatchedBook(path)
    errors: list[DndmError] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: book.autosave(0.01, on_error=errors.append, task_status=task_status)
        )
        book.record(A, ["/ip4/127.0.0.1/tcp/1"])
        with trio.fail_after(10):
            await book.saved.wait()
        assert AddressBook.load(path).peers() == [A]
        book.record(B, ["/ip4/127.0.0.1/tcp/2"])
        nursery.cancel_scope.cancel()  # before the next interval: the final save writes it
    assert AddressBook.load(path).peers() == [B, A]
    assert errors == []


async def test_autosave_reports_a_failed_save_and_keeps_going(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    book = AddressBook(blocker / "peers.book")
    errors: list[DndmError] = []
    two_errors = trio.Event()

    def on_error(error: DndmError) -> None:
        errors.append(error)
        if len(errors) == 2:
            two_errors.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: book.autosave(0.01, on_error=on_error))
        book.record(A, ["/ip4/127.0.0.1/tcp/1"])
        with trio.fail_after(10):
            await two_errors.wait()
        nursery.cancel_scope.cancel()
    assert all(isinstance(e, Unavailable) for e in errors)
    assert "cannot write the address book" in str(errors[0])
    assert book.dirty
