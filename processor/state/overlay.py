"""A read-your-writes view of a store for one batch.

The runner decides a batch of records against a :class:`BatchOverlay`: each decision sees the
writes of the decisions before it, nothing reaches the store until the batch's Kafka
transaction has committed, and then ``store.apply(overlay.writes, checkpoint)`` applies them.
If the transaction aborts, ``clear()`` discards them.

Within a batch, ``savepoint()`` before each record and ``rollback()`` after a record that
could not be decided undo that record's writes alone (the worker dead-letters it and goes on).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType

from processor.errors import InputError
from processor.state.store import StateReader, check_key


class BatchOverlay:
    """Pending puts and deletes in front of a :class:`~processor.state.store.StateReader`."""

    def __init__(self, store: StateReader, max_value_bytes: int | None = None) -> None:
        self._store = store
        # Every write goes to the changelog: one the producer would refuse fails the batch.
        self._max_value_bytes = max_value_bytes
        self._pending: dict[bytes, bytes | None] = {}
        # Every key written since the savepoint -> its pending write then, ``(value,)``, or
        # ``None`` if it had none.
        self._undo: dict[bytes, tuple[bytes | None] | None] | None = None

    @property
    def writes(self) -> Mapping[bytes, bytes | None]:
        """The pending writes (a read-only live view): ``bytes`` to put, ``None`` to delete."""
        return MappingProxyType(self._pending)

    def __len__(self) -> int:
        """Return the number of keys with a pending write."""
        return len(self._pending)

    def put(self, key: bytes, value: bytes) -> None:
        """Buffer a put of ``value`` under ``key``; :class:`InputError` if it is too big."""
        check_key(key)
        if not isinstance(value, bytes):
            raise TypeError(f"state value must be bytes, not {type(value).__name__}")
        if self._max_value_bytes is not None and len(value) > self._max_value_bytes:
            raise InputError(f"its state value of {len(value)} bytes is over NCD_MAX_RECORD_BYTES")
        self._remember(key)
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        """Buffer a delete of ``key`` (whether or not the store has it)."""
        self._remember(check_key(key))
        self._pending[key] = None

    def clear(self) -> None:
        """Discard every pending write (and the savepoint)."""
        self._pending.clear()
        self._undo = None

    def savepoint(self) -> None:
        """Mark the pending writes as they are now: ``rollback()`` returns to them."""
        self._undo = {}

    def rollback(self) -> None:
        """Undo every write since the last ``savepoint()`` (nothing if there was none)."""
        for key, old in (self._undo or {}).items():
            if old is None:
                del self._pending[key]
            else:
                self._pending[key] = old[0]
        if self._undo is not None:
            self._undo = {}

    def _remember(self, key: bytes) -> None:
        undo = self._undo
        if undo is not None and key not in undo:
            undo[key] = (self._pending[key],) if key in self._pending else None

    def get(self, key: bytes) -> bytes | None:
        """Return the pending value of ``key`` if any (``None`` if deleted), else the store's.

        A pending key was checked when it was written; any other key is checked by the store.
        """
        pending = self._pending
        if key in pending:
            return pending[key]
        return self._store.get(key)

    def viewer(self, *, checked: bool = True) -> Callable[[bytes], bytes | memoryview | None]:
        """:meth:`get` as one function, for a loop of reads with no write between them (a run
        of unchanged records): the pending writes as they are now, then the store's
        (:meth:`StateReader.viewer <processor.state.store.StateReader.viewer>`: a value may be
        a view, valid until the store's next write: compared and dropped, never kept;
        ``checked=False``: its checksum unchecked, for a comparison only)."""
        return self._store.viewer(self._pending, checked=checked)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield the store's entries under ``prefix`` merged with pending writes, sorted."""
        return _merge(self._store.scan(prefix), self._pending_under(prefix))

    def keys(self, prefix: bytes) -> Iterator[bytes]:
        """Yield the store's keys under ``prefix`` merged with pending writes, sorted."""
        pending = self._pending_under(prefix)
        if not pending:
            return self._store.keys(prefix)
        return iter(_merge_keys(list(self._store.keys(prefix)), pending))

    def _pending_under(self, prefix: bytes) -> list[tuple[bytes, bytes | None]]:
        """The pending writes under ``prefix``, sorted by key."""
        return sorted(
            ((k, v) for k, v in self._pending.items() if k.startswith(prefix)),
            key=lambda kv: kv[0],
        )

    def count(self, prefix: bytes) -> int:
        """Return how many keys start with ``prefix`` once pending writes are applied."""
        n = self._store.count(prefix)
        for key, value in self._pending.items():
            if key.startswith(prefix):
                existed = self._store.get(key) is not None
                n += (value is not None) - existed
        return n


def _merge(
    stored: Iterator[tuple[bytes, bytes]], pending: list[tuple[bytes, bytes | None]]
) -> Iterator[tuple[bytes, bytes]]:
    """Merge two key-sorted streams; a pending entry replaces (or, if ``None``, hides) a stored."""
    i = 0
    for key, value in stored:
        while i < len(pending) and pending[i][0] < key:
            new_key, new_value = pending[i]
            if new_value is not None:
                yield new_key, new_value
            i += 1
        if i < len(pending) and pending[i][0] == key:
            new_value = pending[i][1]
            i += 1
            if new_value is not None:
                yield key, new_value
            continue
        yield key, value
    for new_key, new_value in pending[i:]:
        if new_value is not None:
            yield new_key, new_value


def _merge_keys(stored: list[bytes], pending: list[tuple[bytes, bytes | None]]) -> list[bytes]:
    """:func:`_merge` of keys alone, in runs between pending keys (no Python step per key)."""
    merged: list[bytes] = []
    at = 0
    for key, value in pending:
        i = bisect.bisect_left(stored, key, at)
        merged += stored[at:i]
        if value is not None:
            merged.append(key)
        at = i + 1 if i < len(stored) and stored[i] == key else i
    merged += stored[at:]
    return merged
