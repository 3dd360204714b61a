"""What a partition's processor keeps in memory during one batch, and how it is undone.

Two things are cheaper kept in memory than read and written per record: each source's
metadata (:class:`~processor.worker.state.SourceMeta`: baseline set, aggregations running
and done) and which accounts each running aggregation saw. :class:`BatchMemory` caches
both for the batch and writes them into the batch's state once, at its end (seen keys as
chunks named by the batch, the metadata that changed).

A record that cannot be decided must leave no trace, here as in the state overlay: every
change a record makes to this memory registers how to undo it, and :meth:`BatchMemory.rollback`
undoes them (with the overlay's own rollback) back to the record's savepoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processor import codec
from processor.errors import InputError
from processor.state.overlay import BatchOverlay
from processor.worker.state import AggregationInfo, SourceMeta, k_meta, k_pending_delete, k_seen


class BatchMemory:
    """Per-batch source metadata and seen accounts, with a per-record undo log."""

    def __init__(self, max_record_bytes: int | None = None) -> None:
        self._max_record_bytes = max_record_bytes
        self._meta: dict[str, SourceMeta] = {}
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._dirty_meta: set[str] = set()
        # How to undo the current record's changes to the three above (see ``rollback``).
        # Each entry is a function and its one argument (no closure to build per record).
        self._undo: list[tuple[Callable[[Any], object], Any]] = []
        self._touched: set[str] = set()
        self._latest_ms: int | None = None

    # ----------------------------------------------------------------- batch bracket

    def begin(self, latest_ms: int | None = None) -> None:
        """Forget anything cached from an aborted batch; ``latest_ms`` bounds instants."""
        self._latest_ms = latest_ms
        self._meta.clear()
        self._seen.clear()
        self._dirty_meta.clear()
        self._undo.clear()
        self._touched.clear()

    def end(self, state: BatchOverlay, batch_id: int) -> None:
        """Write the batch's seen-account chunks and changed metadata into ``state``."""
        for (source_id, aggregation_id), keys in self._seen.items():
            for n, chunk in enumerate(self._chunks(sorted(keys))):
                state.put(k_seen(source_id, aggregation_id, batch_id, n), codec.dumps(chunk))
        for source_id in self._dirty_meta:
            state.put(k_meta(source_id), self._meta[source_id].encode())
        self.begin(self._latest_ms)

    def _chunks(self, keys: list[str]) -> list[list[str]]:
        """``keys`` in runs whose JSON stays within half the record size limit (if any)."""
        if self._max_record_bytes is None:
            return [keys] if keys else []
        budget = self._max_record_bytes // 2
        if _fits(keys, budget):
            return [keys] if keys else []
        chunks: list[list[str]] = []
        size = budget
        for key in keys:
            cost = len(key.encode("utf-8", "surrogatepass")) + 3  # quotes and a comma
            if size + cost > budget:
                chunks.append([])
                size = 2
            chunks[-1].append(key)
            size += cost
        return chunks

    def not_future(self, instant_ms: int, name: str) -> int:
        """``instant_ms``, unless it is later than the batch's latest allowed instant."""
        if self._latest_ms is not None and instant_ms > self._latest_ms:
            raise InputError(f"{name} is in the future (beyond NCD_FUTURE_ALLOWANCE_S)")
        return instant_ms

    # ----------------------------------------------------------------- savepoint

    def savepoint(self, state: BatchOverlay) -> None:
        """Start a record: what it changes from here on can be rolled back."""
        state.savepoint()
        if self._undo:  # (once per record: most records leave nothing to clear)
            self._undo.clear()
        if self._touched:
            self._touched.clear()

    def rollback(self, state: BatchOverlay) -> None:
        """Undo everything the current record did, in ``state`` and here."""
        state.rollback()
        for undo, argument in reversed(self._undo):
            undo(argument)
        self.savepoint(state)

    # ----------------------------------------------------------------- source metadata

    def meta_of(self, source_id: str, state: BatchOverlay) -> SourceMeta:
        """The metadata of ``source_id``, read from ``state`` once per batch."""
        meta = self._meta.get(source_id)
        if meta is None:
            raw = state.get(k_meta(source_id))
            meta = SourceMeta() if raw is None else SourceMeta.decode(raw)
            self._meta[source_id] = meta
        return meta

    def changing(self, source_id: str) -> SourceMeta:
        """The cached metadata of ``source_id``, about to change (``rollback`` restores it)."""
        meta = self._meta[source_id]
        if source_id not in self._touched:
            self._touched.add(source_id)
            copy, dirty = meta.copy(), source_id in self._dirty_meta
            self._undo.append((self._restore_meta, (source_id, copy, dirty)))
        self._dirty_meta.add(source_id)
        return meta

    def _restore_meta(self, saved: tuple[str, SourceMeta, bool]) -> None:
        source_id, meta, dirty = saved
        self._meta[source_id] = meta
        if not dirty:
            self._dirty_meta.discard(source_id)

    def running(
        self, source_id: str, aggregation_id: str, state: BatchOverlay
    ) -> tuple[SourceMeta, AggregationInfo | None, bool]:
        """(meta, the running aggregation or None, whether it is a completed one)."""
        meta = self.meta_of(source_id, state)
        return meta, meta.running.get(aggregation_id), aggregation_id in meta.done

    # ----------------------------------------------------------------- seen accounts

    def saw(self, source_id: str, aggregation_id: str, key: str) -> None:
        """Note that an aggregation contained the account stored under ``key``."""
        seen = self._seen.get((source_id, aggregation_id))
        if seen is None:
            seen = self._seen[source_id, aggregation_id] = set()
        if key not in seen:
            seen.add(key)
            self._undo.append((seen.discard, key))

    def saw_decided(self, source_id: str, aggregation_id: str, keys: list[str]) -> None:
        """Note that an aggregation contained the accounts stored under ``keys``, for records
        already decided outside any savepoint (a run of unchanged records: nothing to undo)."""
        seen = self._seen.get((source_id, aggregation_id))
        if seen is None:
            self._seen[source_id, aggregation_id] = set(keys)
        else:
            seen.update(keys)

    def _restore_seen(self, saved: tuple[tuple[str, str], set[str]]) -> None:
        self._seen[saved[0]] = saved[1]

    def seen_keys(self, source_id: str, aggregation_id: str, state: BatchOverlay) -> set[str]:
        """Every account an aggregation contained: this batch's and earlier batches' chunks."""
        seen = set(self._seen.get((source_id, aggregation_id), ()))
        for _, chunk in state.scan(k_seen(source_id, aggregation_id)):
            seen.update(codec.loads_trusted(chunk))
        return seen

    def forget(self, source_id: str, aggregation_id: str, state: BatchOverlay) -> None:
        """Drop what an ended aggregation kept: seen accounts and accounts flagged deleted."""
        seen = self._seen.pop((source_id, aggregation_id), None)
        if seen is not None:
            self._undo.append((self._restore_seen, ((source_id, aggregation_id), seen)))
        for prefix in (
            k_seen(source_id, aggregation_id),
            k_pending_delete(source_id, aggregation_id),
        ):
            for key in list(state.keys(prefix)):
                state.delete(key)


def _fits(keys: list[str], budget: int) -> bool:
    """Whether the JSON of ``keys`` (as ``_chunks`` counts it) fits ``budget``, told without a
    step per key when they are ASCII (as uuid keys are): one chunk, as the step per key makes
    it then."""
    joined = "".join(keys)
    return joined.isascii() and 2 + len(joined) + 3 * len(keys) <= budget
