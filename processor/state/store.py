"""The state store interface and its in-memory twin.

A state store holds, for one input partition, the last state of every account (key -> value,
both ``bytes``) together with the changelog checkpoint: the next offset of the store's
compacted changelog partition that the store has not applied yet. The runner writes every
change to the changelog inside its Kafka transaction and, only after that transaction has
committed, calls :meth:`StateStore.apply` with the same writes and the changelog offset
reached. On start it restores what the store lacks by reading the changelog from
:meth:`StateStore.checkpoint` to its end and applying it the same way.

Every store, on disk or in memory, has the same semantics, checked by the same tests:

* keys are 1..``MAX_KEY_BYTES`` bytes (LMDB's limit), values are ``bytes`` (may be empty);
* ``scan`` yields ``(key, value)`` sorted by key bytes, ``keys`` the same keys alone; both
  are stable while nothing writes;
* ``apply`` validates everything first, then applies puts, deletes (``None``; deleting a
  missing key is a no-op) and the checkpoint all or nothing; ``checkpoint=None`` keeps the
  current checkpoint;
* any call on a closed store raises :class:`~processor.errors.StateError`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from processor.errors import StateCorruptError, StateError

# LMDB's compile-time maximum key size (mdb_env_get_maxkeysize); the in-memory twin
# enforces the same limit so that code tested against it also runs on disk.
MAX_KEY_BYTES = 511


class StateReader(Protocol):
    """Read access to keyed state; satisfied by stores and by a batch overlay."""

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or ``None``."""
        ...

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield every ``(key, value)`` whose key starts with ``prefix``, sorted by key."""
        ...

    def keys(self, prefix: bytes) -> Iterator[bytes]:
        """Yield every key that starts with ``prefix``, sorted, without reading its value."""
        ...

    def viewer(
        self, before: Mapping[bytes, bytes | None] = ..., *, checked: bool = True
    ) -> Callable[[bytes], bytes | memoryview | None]:
        """:meth:`get` as one function for a loop of reads with no write between them, a key
        of ``before`` (a batch's pending writes) read as it says there. A value may be a view
        of the store's memory, valid until its next write: compared and dropped, never kept.
        ``checked=False``: a store that checksums its values may skip the check, for a
        comparison of a few bytes whose mismatch is then read again with :meth:`get` (see
        ``LmdbStateStore.viewer``)."""
        ...

    def count(self, prefix: bytes) -> int:
        """Return how many keys start with ``prefix``."""
        ...


class StateStore(StateReader, Protocol):
    """The state of one input partition, with its changelog checkpoint."""

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        """Atomically apply puts (``bytes``), deletes (``None``) and, if given, the checkpoint."""
        ...

    def checkpoint(self) -> int | None:
        """Return the next changelog offset to read, or ``None`` if never set."""
        ...

    def flush(self) -> None:
        """Wait until every apply is written (an apply may return before); raise the error
        of one that failed. ``close`` flushes first."""
        ...

    def stored_entries(self) -> int:
        """How many keys the store held when its last apply was *written* (an apply still
        being written is not counted yet): for metrics, so it never waits and may be asked
        from another thread, also after the close (the last figure)."""
        ...

    def close(self) -> None:
        """Release the store; further calls raise ``StateError``. Idempotent."""
        ...


class StoreFactory(Protocol):
    """Opens and destroys the state store of each input partition."""

    def open(self, partition: int) -> StateStore:
        """Open (creating if needed) the store of ``partition``; may raise ``StateCorruptError``."""
        ...

    def destroy(self, partition: int) -> None:
        """Delete the store of ``partition`` (it must not be open); no-op if absent."""
        ...


def check_key(key: object) -> bytes:
    """Return ``key`` if it is a valid store key, else raise ``TypeError``/``ValueError``."""
    if not isinstance(key, bytes):
        raise TypeError(f"state key must be bytes, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"state key must be 1..{MAX_KEY_BYTES} bytes, got {len(key)}")
    return key


def check_writes(
    writes: Mapping[bytes, bytes | None], checkpoint: int | None
) -> list[tuple[bytes, bytes | None]]:
    """Validate a whole ``apply`` before any of it is applied (so a bad item applies nothing).

    Returns the writes as a list, read once, so that applying them cannot see other items.
    """
    items = list(writes.items())
    for key, value in items:
        check_key(key)
        if value is not None and not isinstance(value, bytes):
            raise TypeError(f"state value must be bytes or None, not {type(value).__name__}")
    if checkpoint is not None:
        if isinstance(checkpoint, bool) or not isinstance(checkpoint, int):
            raise TypeError("checkpoint must be an int or None")
        if checkpoint < 0:
            raise ValueError("checkpoint must be >= 0")
    return items


@dataclass
class MemoryTable:
    """The contents of an in-memory store; outlives a store handle, like a directory on disk."""

    items: dict[bytes, bytes] = field(default_factory=dict)
    checkpoint: int | None = None
    #: The keys in order, rebuilt lazily after keys were added or removed: prefix scans
    #: bisect it instead of testing every key (the worker scans small prefixes per record).
    sorted_keys: list[bytes] | None = None

    def ordered(self) -> list[bytes]:
        if self.sorted_keys is None:
            self.sorted_keys = sorted(self.items)
        return self.sorted_keys

    def keys_with(self, prefix: bytes) -> list[bytes]:
        keys = self.ordered()
        start = bisect.bisect_left(keys, prefix)
        end = start
        while end < len(keys) and keys[end].startswith(prefix):
            end += 1
        return keys[start:end]


class InMemoryStateStore:
    """A dict-backed :class:`StateStore` with the same semantics as the on-disk store."""

    def __init__(self, table: MemoryTable | None = None) -> None:
        self._table = table if table is not None else MemoryTable()
        self._closed = False

    def _live(self) -> MemoryTable:
        if self._closed:
            raise StateError("state store is closed")
        return self._table

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or ``None``."""
        return self._live().items.get(check_key(key))

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield every ``(key, value)`` whose key starts with ``prefix``, sorted by key."""
        table = self._live()
        # Snapshot before yielding so that a write during iteration cannot break it.
        return iter([(k, table.items[k]) for k in table.keys_with(prefix)])

    def keys(self, prefix: bytes) -> Iterator[bytes]:
        """Yield every key that starts with ``prefix``, sorted, without reading its value."""
        return iter(self._live().keys_with(prefix))  # a copy: writes cannot break it

    def viewer(
        self, before: Mapping[bytes, bytes | None] = MappingProxyType({}), *, checked: bool = True
    ) -> Callable[[bytes], bytes | memoryview | None]:
        """:meth:`get` as one function, ``before`` read first (values are copies here, with
        no checksum: ``checked`` changes nothing)."""
        get = self.get
        if not before:
            return get

        def view(key: bytes) -> bytes | None:
            return before[key] if key in before else get(key)

        return view

    def count(self, prefix: bytes) -> int:
        """Return how many keys start with ``prefix``."""
        table = self._live()
        if not prefix:
            return len(table.items)
        return len(table.keys_with(prefix))

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        """Atomically apply puts (``bytes``), deletes (``None``) and, if given, the checkpoint."""
        table = self._live()
        for key, value in check_writes(writes, checkpoint):
            if value is None:
                if table.items.pop(key, None) is not None:
                    table.sorted_keys = None
            else:
                if key not in table.items:
                    table.sorted_keys = None
                table.items[key] = value
        if checkpoint is not None:
            table.checkpoint = checkpoint

    def checkpoint(self) -> int | None:
        """Return the next changelog offset to read, or ``None`` if never set."""
        return self._live().checkpoint

    def flush(self) -> None:
        """Nothing to wait for: every apply is done when it returns."""
        self._live()

    def stored_entries(self) -> int:
        """How many keys the store holds (every apply is written when it returns)."""
        return len(self._table.items)

    def close(self) -> None:
        """Release the store; further calls raise ``StateError``. Idempotent."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed


class InMemoryStoreFactory:
    """A :class:`StoreFactory` whose stores live in memory and survive close/reopen.

    ``mark_corrupt(partition)`` makes the next ``open`` raise ``StateCorruptError`` (until the
    partition is destroyed), so that the runner's rebuild path can be tested without disk.
    """

    def __init__(self) -> None:
        self.tables: dict[int, MemoryTable] = {}
        self._open: dict[int, InMemoryStateStore] = {}
        self._corrupt: set[int] = set()

    def open(self, partition: int) -> InMemoryStateStore:
        """Open (creating if needed) the store of ``partition``."""
        check_partition(partition)
        if partition in self._corrupt:
            raise StateCorruptError(f"state store of partition {partition} is marked corrupt")
        current = self._open.get(partition)
        if current is not None and not current.closed:
            raise StateError(f"state store of partition {partition} is already open")
        store = InMemoryStateStore(self.tables.setdefault(partition, MemoryTable()))
        self._open[partition] = store
        return store

    def destroy(self, partition: int) -> None:
        """Delete the store of ``partition`` (it must not be open); no-op if absent."""
        check_partition(partition)
        current = self._open.get(partition)
        if current is not None and not current.closed:
            raise StateError(f"cannot destroy the open state store of partition {partition}")
        self._open.pop(partition, None)
        self.tables.pop(partition, None)
        self._corrupt.discard(partition)

    def mark_corrupt(self, partition: int) -> None:
        """Make the next ``open(partition)`` raise ``StateCorruptError`` until destroyed."""
        self._corrupt.add(partition)


def check_partition(partition: int) -> None:
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise ValueError("partition must be an int >= 0")
