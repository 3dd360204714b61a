"""The write side of an LMDB store: each apply's write transaction, on a thread of its own.

:class:`Writer` runs the write transactions of one environment on one thread of its own,
one at a time: the caller hands an apply over and goes on while LMDB writes and fsyncs
(py-lmdb releases the GIL for the commit). LMDB ties a write transaction to the thread
that began it, so each is begun, filled and committed on the writer thread; read
transactions of other threads may run beside it (MVCC, and py-lmdb opens every
environment with ``MDB_NOTLS``, so read transactions are not tied to threads).

Map growth (``set_mapsize``) is allowed only while this process has no transaction of
the environment open, and the caller's reads have theirs: so a write that does not fit
is aborted on the writer thread (nothing written) and reported to the caller, who ends
its reads, grows the map and writes it itself (:func:`write_growing`).

A write that fails on the thread keeps its error, as :class:`~processor.errors.StateError`
or :class:`~processor.errors.StateCorruptError`, until :meth:`Writer.failure` is raised
by the store's next call; the store refuses every call after it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import lmdb

from processor.errors import StateCorruptError, StateError
from processor.state.lmdb_format import (
    CHECKPOINT,
    CHECKPOINT_KEY,
    CORRUPT_ERRORS,
    CRC,
    mapped_errors,
    round_map_size,
    seal,
)

#: The writes of one apply: puts (``bytes``) and deletes (``None``), validated.
Items = list[tuple[bytes, bytes | None]]

# Each growth at least doubles the map, so 40 attempts cannot be exhausted by real data.
_MAX_GROWTHS = 40


def write(env: Any, dbs: tuple[Any, Any], items: Items, checkpoint: int | None) -> int:
    """One write transaction of ``items`` into ``dbs`` (data, meta) and the checkpoint;
    returns how many entries the data then holds.

    ``lmdb.MapFullError`` passes through (nothing is written); any other LMDB error is a
    ``StateCorruptError`` or ``StateError``.
    """
    data, meta = dbs
    try:
        with env.begin(write=True) as txn:
            for key, value in items:
                if value is None:
                    txn.delete(key, db=data)
                else:
                    txn.put(key, seal(key, value), db=data)
            if checkpoint is not None:
                raw = seal(CHECKPOINT_KEY, CHECKPOINT.pack(checkpoint))
                txn.put(CHECKPOINT_KEY, raw, db=meta)
            entries: int = txn.stat(data)["entries"]
    except lmdb.MapFullError:
        raise
    except CORRUPT_ERRORS as exc:
        raise StateCorruptError(f"state store is damaged (apply): {exc}") from exc
    except lmdb.Error as exc:
        raise StateError(f"state store failed (apply): {exc}") from exc
    return entries


def write_growing(env: Any, dbs: tuple[Any, Any], items: Items, checkpoint: int | None) -> int:
    """:func:`write`, growing the map and trying again while it does not fit.

    Only while this process has no transaction of ``env`` open (LMDB's rule for growth).
    """
    for _ in range(_MAX_GROWTHS):
        try:
            return write(env, dbs, items, checkpoint)
        except lmdb.MapFullError:
            current: int = env.info()["map_size"]
            batch = sum(len(k) + len(v or b"") + CRC.size for k, v in items)
            with mapped_errors("grow map"):
                env.set_mapsize(round_map_size(max(2 * current, current + 2 * batch)))
    raise StateError("state store map could not grow enough for one apply")


class Writer:
    """The write transactions of one environment, one at a time on a thread of its own."""

    def __init__(self, env: Any, dbs: tuple[Any, Any], name: str, entries: int) -> None:
        self._env = env
        self._dbs = dbs
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"state-{name}")
        #: The write handed over and not waited for yet.
        self._inflight: Future[bool] | None = None
        #: The error of a failed write (set by the writer thread), for every later call.
        self.failed: StateError | None = None
        self._reported = False
        #: How many entries the data held after the last write committed (read by any
        #: thread: an int, replaced whole).
        self.entries = entries

    def submit(self, items: Items, checkpoint: int | None) -> None:
        """Hand a write over (the previous one must have been waited for: :meth:`wait`)."""
        assert self._inflight is None, "one write in flight at a time"
        self._inflight = self._thread.submit(self._attempt, items, checkpoint)

    def _attempt(self, items: Items, checkpoint: int | None) -> bool:
        """On the writer thread: write; ``False`` if the map is full (nothing written)."""
        try:
            self.entries = write(self._env, self._dbs, items, checkpoint)
        except lmdb.MapFullError:
            return False
        except StateError as exc:
            self.failed = exc
            raise
        except Exception as exc:  # kept for the caller, as a StateError
            self.failed = StateError(f"state store failed (apply): {type(exc).__name__}")
            raise self.failed from exc
        return True

    def wait(self) -> bool | None:
        """Wait for the write in flight: ``True`` once committed, ``False`` if the map was
        full (nothing written: :func:`write_growing` it), ``None`` if there was none.

        Raises the write's error, unless another call has raised it already.
        """
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return None
        try:
            return inflight.result()
        except StateError:
            if self._reported:
                return None
            raise self.failure()  # noqa: B904 - caused by the write's own error

    def fail(self, exc: StateError) -> None:
        """Note a write that failed on the caller's thread: every later call refuses."""
        self.failed, self._reported = exc, True

    def failure(self) -> StateError:
        """The failed write's error, to raise (its class and message, caused by it)."""
        failed = self.failed
        assert failed is not None
        self._reported = True
        error = type(failed)(str(failed))
        error.__cause__ = failed
        return error

    def close(self) -> None:
        """Wait for the write in flight, whatever its outcome, and end the thread."""
        self._thread.shutdown(wait=True)
