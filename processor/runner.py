"""The streaming worker's loop: poll, decode, decide, produce, commit.

One batch is one unit of work and, in exactly-once mode, one Kafka transaction. The order
of a batch, and why:

1. ``sink.begin()``.
2. Decide every record against a read-your-writes overlay of its partition's store; send
   its events and dead letters to the sink.
3. Send every state write of the batch to the changelog partition of the same number.
4. ``sink.commit(offsets)``: flushes, adds the input offsets to the transaction, commits.
   Events, dead letters, changelog and offsets become visible together, or not at all.
5. Only then apply the overlay to the local store with the changelog offset reached.
   State is never persisted ahead of the output it implies (the KIP-557 lesson): if the
   worker dies between 4 and 5, the restore on start replays the changelog from the
   store's checkpoint and the store catches up; if it dies before 4, nothing happened.

In at-least-once mode step 4 is a flush followed by a commit of the offsets on the
consumer; a crash in between re-emits events with the same deterministic ids.

No single record can stop the loop: any failure while deciding one record or building its
outputs (:meth:`Runner._decide`) undoes what the record did and dead-letters it with its
reason, and the batch goes on. Only broker and state failures end a batch: a retriable broker
failure aborts it, rewinds the consumer to the batch's first offsets, and retries after a
capped exponential backoff; anything else ends the loop with the exception (the orchestrator
restarts the worker).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from processor.config import Guarantee, Settings
from processor.errors import (
    InputError,
    ProcessorError,
    StateCorruptError,
    StateError,
    TransportError,
)
from processor.keys import record_key
from processor.models import Operation
from processor.observability.aggregations import AggregationTracker
from processor.observability.metrics import Metrics
from processor.state.overlay import BatchOverlay
from processor.state.store import StateStore, StoreFactory
from processor.topics import ensure_topics
from processor.transport import (
    LAG_UNKNOWN,
    TP,
    GroupConsumer,
    InRecord,
    OutRecord,
    PartitionReader,
    TransactionalSink,
    Transport,
)
from processor.worker.outputs import event_record, remediation_record
from processor.worker.partition import UNKNOWN_SOURCE, Outcome, PartitionProcessor, Verdict
from processor.worker.registry import SourceRegistry

log = structlog.get_logger("processor.runner")

#: Records read per poll while restoring a changelog or reading the config topics.
RESTORE_BATCH = 5_000
#: How long one poll of a restore or catch-up may wait for data that end offsets promise.
CATCH_UP_POLL_S = 1.0
#: A catch-up that makes no progress for this long fails (the broker is gone or stuck).
CATCH_UP_STALL_S = 60.0
#: Polls in a row a partition's aggregation records may wait for its provisioning input.
MAX_HOLD_POLLS = 20
#: How long start-up retries retriable faults (a fresh cluster, topics just created).
START_RETRY_S = 60.0
#: Consumer lag is sampled at most this often (it asks the client for every partition).
LAG_SAMPLE_S = 1.0

#: Failures while handling a record that are not the record's fault: they end the batch.
NOT_THE_RECORDS_FAULT = (TransportError, StateError, MemoryError)


@dataclass
class Stats:
    """Counters since start; the metrics endpoint and the tests read them."""

    verdicts: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    deletes_suppressed: int = 0
    delete_guard_trips: int = 0
    batches: int = 0
    aborted_batches: int = 0
    restored_records: int = 0
    #: Aggregation records put back to wait for their partition's provisioning input.
    held_back: int = 0


def failure_reason(exc: Exception) -> str:
    """The dead-letter reason of a record whose decision raised ``exc``, free of values.

    An :class:`InputError` has its own reason; anything else is named by its type and the
    function that raised it, never by its message (which may quote the record).
    """
    if isinstance(exc, InputError):
        return exc.reason
    frames = traceback.extract_tb(exc.__traceback__)
    where = frames[-1].name if frames else "?"
    return f"could not be decided ({type(exc).__name__} in {where})"


def key_matches(key: bytes | None, outcome: Outcome) -> bool:
    """Whether a record's key names the source (and account) its decided value names.

    Keys are ``sourceId/<uuid or nativeIdentity>`` (:func:`~processor.keys.record_key`);
    markers and provisioning records are checked up to the source (a marker's key names its
    aggregation; a provisioning record's may name a uuid the record does not carry).
    """
    source_id = outcome.source_id
    if key is None or source_id is None:
        return False
    if outcome.record_key is not None:
        return key == outcome.record_key
    return key.startswith(record_key(source_id, None, ""))


#: Why a record whose key does not match its value is dead-lettered.
KEY_MISMATCH = "record key does not match the sourceId and account of its value"


def dead_letter(
    topic: str, record: InRecord, reason: str, max_value_bytes: int | None = None
) -> OutRecord:
    """The input record, unchanged, with headers naming the error and where it came from.

    A value over ``max_value_bytes`` is left out (header ``ncd_value_omitted`` gives its
    size): the producer could not write it, and the headers point at the original, which
    stays in the input topic. Nothing is lost; the partition keeps flowing.
    """
    headers = [
        # A reason may name a field of the input, which may hold a lone surrogate.
        ("ncd_error", reason.encode(errors="backslashreplace")),
        ("ncd_original_topic", record.topic.encode()),
        ("ncd_original_partition", str(record.partition).encode()),
        ("ncd_original_offset", str(record.offset).encode()),
    ]
    value = record.value
    if value is not None and max_value_bytes is not None and len(value) > max_value_bytes:
        headers.append(("ncd_value_omitted", str(len(value)).encode()))
        value = None
    return OutRecord(topic, record.key, value, tuple(headers))


class ConfigFollower:
    """Reads ``ncd.sources`` and ``ncd.entitlements`` in full, then follows them."""

    def __init__(self, reader: PartitionReader, settings: Settings, registry: SourceRegistry):
        self._reader = reader
        self._registry = registry
        self._sources = settings.topic_sources
        self._entitlements = settings.topic_entitlements
        tps = reader.partitions_for(self._sources) + reader.partitions_for(self._entitlements)
        self._tps = tps
        reader.assign(dict.fromkeys(tps))
        self.rejected = 0

    def follow(self, timeout_s: float = 0.0) -> int:
        """Apply whatever arrived; returns the number of records applied."""
        records = self._reader.poll(timeout_s, RESTORE_BATCH)
        for record in records:
            self._apply(record)
        return len(records)

    def catch_up(self) -> None:
        """Read both topics up to their current end offsets."""
        ends = self._reader.end_offsets(self._tps)
        deadline = time.monotonic() + CATCH_UP_STALL_S
        while any(self._reader.position(tp) < end for tp, end in ends.items()):
            if self.follow(CATCH_UP_POLL_S):
                deadline = time.monotonic() + CATCH_UP_STALL_S
            elif time.monotonic() > deadline:
                raise TransportError("config topics stopped advancing", retriable=True)
        # Tansu 0.6.0 under-reports end offsets of topics written by a plain producer
        # (docs/decisions.md), so take whatever one more short poll brings.
        while self.follow(CATCH_UP_POLL_S):
            pass

    def _apply(self, record: InRecord) -> None:
        """Apply one config record; one that fails in any way is logged and skipped."""
        try:
            if record.topic == self._sources:
                self._registry.apply_source(record.key, record.value)
            else:
                self._registry.apply_entitlement(record.key, record.value)
        except NOT_THE_RECORDS_FAULT:
            raise
        except Exception as exc:  # no single record can stop the worker (see the module doc)
            self.rejected += 1
            log.warning(
                "config_record_rejected",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reason=failure_reason(exc),
            )

    def close(self) -> None:
        self._reader.close()


@dataclass
class _Partition:
    store: StateStore
    processor: PartitionProcessor


class Runner:
    """The worker: owns the clients, the stores of its assigned partitions, the loop."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        stores: StoreFactory,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.stats = Stats()
        self._transport = transport
        self._stores = stores
        self._sleep = sleep
        #: Wall clock (seconds since the epoch): bounds how far in the future instants may be.
        self._clock = clock
        self._registry = SourceRegistry()
        self._partitions: dict[int, _Partition] = {}
        self._exactly_once = settings.guarantee == Guarantee.EXACTLY_ONCE
        self._restorer: PartitionReader | None = None
        self.ready = threading.Event()
        self._held_polls: dict[int, int] = {}
        self._holding: set[int] = set()
        #: Input partitions of aborted batches, to resume from their committed offsets.
        self._unsettled: set[TP] = set()
        #: Counts rebalance callbacks, so that a batch being filled notices one.
        self._rebalances = 0
        self.metrics = Metrics(
            verdicts=[v.value for v in Verdict], event_types=[o.value for o in Operation]
        )
        self.metrics.track_ready(self.ready.is_set)
        self._aggregations = AggregationTracker()
        # Whether the group has handed this member its partitions (maybe none), all restored.
        self._joined = False
        # Last sign of progress of the loop or of a restore; None once the loop has ended.
        self._last_beat: float | None = time.monotonic()
        self._lag_sampled = float("-inf")

    # ------------------------------------------------------------------ lifecycle

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; the batch in progress is committed or aborted first."""
        s = self.settings
        follower = self._start(stop)
        log.info("config_loaded", sources=len(self._registry), rejected=follower.rejected)
        self._restorer = self._transport.partition_reader()
        sink = self._transport.sink(s.transactional_id)
        # Both inputs are keyed by account and have the same partition count; the range
        # assignor gives one member the same partition numbers of both (co-partitioning),
        # so partition p of either topic reads and writes the state store p.
        consumer = self._transport.group_consumer(
            [s.topic_aggregations, s.topic_provisioning], s.group_id, self
        )
        backoff = s.retry_backoff_first_s
        try:
            while not stop.is_set():
                self._last_beat = time.monotonic()
                follower.follow()
                try:
                    if self._unsettled:
                        self._settle(sink, consumer)
                    records = consumer.poll(s.poll_timeout_s, s.max_batch_records)
                    if records and s.batch_linger_ms > 0:
                        records = self._linger(consumer, records)
                    if self._joined:  # every assigned partition restored, and polling
                        self.ready.set()
                    lag = consumer.lag()  # from the last fetch: no broker round trip
                    self._sample_lag(lag)
                    # Every iteration, records or not: held partitions are resumed here.
                    records = self._wait_for_provisioning(records, consumer, lag)
                    if records:
                        self._batch(records, sink, consumer, follower)
                    backoff = s.retry_backoff_first_s
                except TransportError as exc:
                    if not exc.retriable:
                        raise
                    log.warning("batch_retried", error=str(exc), backoff_s=backoff)
                    self._sleep(backoff)
                    backoff = min(backoff * 2, s.retry_backoff_max_s)
        finally:
            self.ready.clear()
            self._last_beat = None
            # Each is closed whatever the others do: a client left in an error state by the
            # failure that ends the loop must not hide that failure or keep stores open.
            for what, close in (
                ("consumer", consumer.close),
                ("sink", sink.close),
                ("config reader", follower.close),
                ("restorer", self._restorer.close),
            ):
                try:
                    close()
                except ProcessorError as exc:
                    log.warning("close_failed", client=what, error=str(exc))
            for partition in list(self._partitions):
                self._close_partition(partition)
            log.info("worker_stopped", **self.summary())

    def _start(self, stop: threading.Event) -> ConfigFollower:
        """Create missing topics and read the config topics, retrying retriable faults.

        Workers started together on a fresh cluster race: a topic one of them has just
        created has leaders in the controller's metadata a moment before its partitions
        answer reads (NOT_LEADER_FOR_PARTITION), and a broker may still be starting.
        Such faults are retried with the loop's backoff for up to ``START_RETRY_S``.
        """
        s = self.settings
        deadline = time.monotonic() + START_RETRY_S
        backoff = s.retry_backoff_first_s
        while True:
            reader = None
            try:
                if s.create_topics:
                    admin = self._transport.admin()
                    try:
                        ensure_topics(admin, s)
                    finally:
                        admin.close()
                reader = self._transport.partition_reader()
                follower = ConfigFollower(reader, s, self._registry)
                follower.catch_up()
                return follower
            except TransportError as exc:
                if reader is not None:
                    reader.close()
                if not exc.retriable or time.monotonic() > deadline or stop.is_set():
                    raise
                log.warning("start_retried", error=str(exc), backoff_s=backoff)
                self._sleep(backoff)
                backoff = min(backoff * 2, s.retry_backoff_max_s)

    def _linger(self, consumer: GroupConsumer, records: list[InRecord]) -> list[InRecord]:
        """Fill the batch from further polls for up to ``batch_linger_ms``: one transaction
        costs a few broker round trips whatever its size, so bigger batches amortise it.

        A rebalance during the wait resets positions to the committed offsets (eager
        protocol): the records read before it would be read again, so they are dropped.
        """
        s = self.settings
        deadline = time.monotonic() + s.batch_linger_ms / 1000
        while len(records) < s.max_batch_records:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            generation = self._rebalances
            more = consumer.poll(min(left, s.poll_timeout_s), s.max_batch_records - len(records))
            if self._rebalances != generation:
                return more
            if not more:
                break
            records.extend(more)
        return records

    def live(self, now: float | None = None) -> bool:
        """Whether the loop (or a restore) made progress within ``max_poll_interval_ms``.

        A loop stuck longer than that has lost its partitions to the group anyway. ``now``
        is a ``time.monotonic()`` reading (default: the current one).
        """
        beat = self._last_beat
        limit_s = self.settings.max_poll_interval_ms / 1000
        now = time.monotonic() if now is None else now
        return beat is not None and now - beat < limit_s

    def _sample_lag(self, lag: Mapping[TP, int]) -> None:
        now = time.monotonic()
        if now - self._lag_sampled >= LAG_SAMPLE_S:
            self._lag_sampled = now
            self.metrics.lag(lag)

    def summary(self) -> dict[str, Any]:
        """Counters for the shutdown line and for tests."""
        return {
            "verdicts": dict(self.stats.verdicts),
            "events": dict(self.stats.events),
            "batches": self.stats.batches,
            "aborted_batches": self.stats.aborted_batches,
            "delete_guard_trips": self.stats.delete_guard_trips,
            "deletes_suppressed": self.stats.deletes_suppressed,
        }

    # ------------------------------------------------------------------ rebalance

    def on_assigned(self, tps: list[TP]) -> None:
        """Open and restore the store of every newly assigned input partition.

        Not ready while restoring: the loop sets ``ready`` again after the poll that called this.
        """
        self._rebalances += 1
        self.ready.clear()
        for tp in sorted(tps):
            if (
                tp.topic == self.settings.topic_aggregations
                and tp.partition not in self._partitions
            ):
                self._open_partition(tp.partition)
        self._joined = True
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in tps))

    def on_revoked(self, tps: list[TP]) -> None:
        """Close the stores of partitions taken away (no batch is open during a poll)."""
        self._rebalances += 1
        for tp in tps:
            self._close_partition(tp.partition)
            self.metrics.forget_partition(tp.partition)
            self._aggregations.forget(tp.partition)
            self._holding.discard(tp.partition)
            self._held_polls.pop(tp.partition, None)
            self._unsettled.discard(tp)
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in tps))

    def _open_partition(self, partition: int) -> None:
        try:
            store = self._stores.open(partition)
        except StateCorruptError as exc:
            log.warning("state_store_rebuilt", partition=partition, reason=str(exc))
            self._stores.destroy(partition)
            store = self._stores.open(partition)
        try:
            self._restore(partition, store)
        except StateCorruptError as exc:
            store.close()
            log.warning("state_store_rebuilt", partition=partition, reason=str(exc))
            self._stores.destroy(partition)
            store = self._stores.open(partition)
            self._restore(partition, store)
        self._partitions[partition] = _Partition(
            store,
            PartitionProcessor(
                self._registry,
                hold_s=self.settings.provisioning_hold_s,
                max_record_bytes=self.settings.max_record_bytes,
            ),
        )
        self.metrics.state_size(partition, store.count(b""))

    def _close_partition(self, partition: int) -> None:
        entry = self._partitions.pop(partition, None)
        if entry is not None:
            entry.store.close()

    def _restore(self, partition: int, store: StateStore) -> None:
        """Apply the changelog from the store's checkpoint to its end.

        The end is the high watermark, not the last stable offset, and the changelog is
        read with read_committed: so the restore waits for every transaction that was still
        open when it began. The group can hand a partition over while the previous owner's
        last commit is still writing its markers (its input offsets already visible, its
        changelog records not yet): restoring only to the last stable offset would then
        miss that batch's state. A transaction left open by a killed worker ends when the
        broker aborts it (``transaction_timeout_ms``) or that worker comes back.
        """
        assert self._restorer is not None
        tp = TP(self.settings.topic_changelog, partition)
        end = self._restorer.written_ends([tp])[tp]
        start = store.checkpoint()
        if start is not None and start > end:
            raise StateCorruptError("checkpoint is past the changelog's end (topic recreated?)")
        if start is not None and start == end:
            self.metrics.restoring(partition, 0, 0)
            return
        self._restorer.assign({tp: start})
        self.metrics.restoring(partition, 0, max(end - self._restorer.position(tp), 0))
        started = time.monotonic()
        restored = 0
        # An open transaction may hold the restore until the broker aborts it.
        stall_s = CATCH_UP_STALL_S + self.settings.transaction_timeout_ms / 1000
        deadline = time.monotonic() + stall_s
        while self._restorer.position(tp) < end:
            records = self._restorer.poll(CATCH_UP_POLL_S, RESTORE_BATCH)
            self._last_beat = time.monotonic()
            if not records:
                if time.monotonic() > deadline:
                    raise TransportError("changelog restore stopped advancing", retriable=True)
                # Transaction markers take offsets too; position may reach end without data.
                continue
            deadline = time.monotonic() + stall_s
            writes = {r.key: r.value for r in records if r.key is not None}
            position = self._restorer.position(tp)
            store.apply(writes, position)
            restored += len(records)
            self.metrics.restoring(partition, len(records), max(end - position, 0))
            self._last_beat = time.monotonic()
        if store.checkpoint() != end:
            store.apply({}, end)
        self.metrics.restoring(partition, 0, 0)
        self.stats.restored_records += restored
        log.info(
            "state_restored",
            partition=partition,
            records=restored,
            from_offset=start,
            to_offset=end,
            duration_s=round(time.monotonic() - started, 3),
        )

    # ------------------------------------------------------------------ batches

    def _batch(
        self,
        records: list[InRecord],
        sink: TransactionalSink,
        consumer: GroupConsumer,
        follower: ConfigFollower,
    ) -> None:
        started = time.monotonic()
        s = self.settings
        by_partition: dict[int, list[InRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        for batch in by_partition.values():
            # The platform's own changes first: an account record must meet the baseline
            # with every provisioning record that is already in (stable: offsets stay in order).
            batch.sort(key=lambda r: r.topic != s.topic_provisioning)
        overlays: dict[int, BatchOverlay] = {}
        verdicts: Counter[str] = Counter()
        events: Counter[str] = Counter()
        guard_trips = 0
        remediations = 0
        decided: list[tuple[int, Outcome]] = []
        caught_up = False
        latest_ms = int((self._clock() + s.future_allowance_s) * 1000)

        def catch_up() -> bool:
            """Read the config topics once per batch: a descriptor may have just come."""
            nonlocal caught_up
            if caught_up:
                return False
            follower.catch_up()
            caught_up = True
            return True

        try:
            # Inside the try: a failed begin must put the polled records back too.
            sink.begin()
            for partition, batch in by_partition.items():
                entry = self._partitions.get(partition)
                if entry is None:  # revoked in this poll: another member owns it now
                    continue
                overlay = overlays[partition] = BatchOverlay(entry.store, s.max_record_bytes)
                entry.processor.begin_batch(latest_ms)
                for record in batch:
                    outcome, outputs = self._decide(entry.processor, record, overlay, catch_up)
                    for out in outputs:
                        sink.send(out)
                    verdicts[outcome.verdict] += 1
                    for event in outcome.events:
                        events[event.eventType] += 1
                    if outcome.deletes_suppressed:
                        guard_trips += 1
                        self._warn_guard(outcome, partition)
                    remediations += len(outcome.remediations)
                    decided.append((partition, outcome))
                # Aggregation offsets grow per partition: the batch's first one names its chunk.
                entry.processor.end_batch(
                    overlay,
                    next((r.offset for r in batch if r.topic == s.topic_aggregations), 0),
                )
                for key, value in overlay.writes.items():
                    sink.send(OutRecord(s.topic_changelog, key, value, partition=partition))
            offsets = {r.tp: r.offset + 1 for r in records if r.partition in overlays}
            commit_started = time.monotonic()
            produced = sink.commit(offsets, consumer.group_id())
            commit_s = time.monotonic() - commit_started
            if not self._exactly_once:
                consumer.commit(offsets)
        except BaseException:
            self._abort(sink, consumer, by_partition)
            raise
        for partition, overlay in overlays.items():
            checkpoint = produced.get(TP(s.topic_changelog, partition))
            self._partitions[partition].store.apply(overlay.writes, checkpoint)
        self.stats.batches += 1
        self.stats.verdicts.update(verdicts)
        self.stats.events.update(events)
        self.stats.delete_guard_trips += guard_trips
        duration_s = time.monotonic() - started
        self.metrics.batch(
            verdicts,
            events,
            guard_trips=guard_trips,
            remediations=remediations,
            duration_s=duration_s,
        )
        for partition in overlays:
            self.metrics.state_size(partition, self._partitions[partition].store.count(b""))
        log.info(
            "batch_committed",
            records=len(records),
            verdicts=dict(verdicts),
            events=dict(events),
            remediations=remediations,
            duration_ms=round(duration_s * 1000, 1),
            commit_ms=round(commit_s * 1000, 1),
        )
        self._summarize(decided)

    def _summarize(self, decided: list[tuple[int, Outcome]]) -> None:
        """Tally committed decisions per aggregation; log the summary of each completed one.

        A run of decisions without events or markers (mostly ``unchanged``) of one partition,
        source and verdict is counted in one call, not one per record.
        """
        run: tuple[int, str | None, str] | None = None
        count = 0
        for partition, outcome in decided:
            if outcome.verdict not in (Verdict.MARKER, Verdict.EMITTED) and not outcome.events:
                here = (partition, outcome.source_id, outcome.verdict)
                if here != run:
                    if run is not None:
                        self._aggregations.observe(*run, count=count)
                    run, count = here, 0
                count += 1
                continue
            if run is not None:
                self._aggregations.observe(*run, count=count)
                run = None
            summary = self._aggregations.observe(
                partition,
                outcome.source_id,
                outcome.verdict,
                [event.eventType for event in outcome.events],
                outcome.completed,
            )
            if summary is not None:
                log.info("aggregation_summary", **summary)
        if run is not None:
            self._aggregations.observe(*run, count=count)

    def _wait_for_provisioning(
        self, records: list[InRecord], consumer: GroupConsumer, lag: Mapping[TP, int]
    ) -> list[InRecord]:
        """Hold back a partition's aggregation records while its provisioning input is behind.

        Kafka orders records within a partition, not across the two input topics; an account
        record read before a provisioning record that completed earlier would report the
        platform's own change as native. So while the consumer knows of provisioning records
        it has not read yet for a partition, that partition's aggregation records are put
        back (seek), its aggregation partition is paused, and it is resumed once the
        provisioning partition has caught up. Bounded: after ``MAX_HOLD_POLLS`` polls the
        aggregation records go ahead (a provisioning stream that never drains must not stall
        aggregations); the race window (docs/provisioning.md) still covers what comes late.
        """
        s = self.settings
        behind = {
            tp.partition
            for tp, count in lag.items()
            # Unknown (no fetch answered yet, e.g. just after assignment) counts as behind.
            if tp.topic == s.topic_provisioning and (count > 0 or count == LAG_UNKNOWN)
        }
        resume = []
        for partition in sorted(self._holding):
            self._held_polls[partition] = self._held_polls.get(partition, 0) + 1
            if partition not in behind or self._held_polls[partition] >= MAX_HOLD_POLLS:
                self._holding.discard(partition)
                resume.append(TP(s.topic_aggregations, partition))
        if resume:
            consumer.resume(resume)
        for partition in list(self._held_polls):
            if partition not in behind and partition not in self._holding:
                del self._held_polls[partition]
        if not behind:
            return records
        kept: list[InRecord] = []
        firsts: dict[TP, int] = {}
        for record in records:
            if (
                record.topic == s.topic_aggregations
                and record.partition in behind
                and self._held_polls.get(record.partition, 0) < MAX_HOLD_POLLS
            ):
                firsts.setdefault(record.tp, record.offset)
                self.stats.held_back += 1
            else:
                kept.append(record)
        for tp, offset in firsts.items():
            consumer.seek(tp, offset)
            self._holding.add(tp.partition)
        if firsts:
            consumer.pause(list(firsts))
        return kept

    def _decide(
        self,
        processor: PartitionProcessor,
        record: InRecord,
        overlay: BatchOverlay,
        catch_up: Callable[[], bool],
    ) -> tuple[Outcome, list[OutRecord]]:
        """Decide one record and build its outputs: the per-record failure boundary.

        Whatever fails here (decoding, validation, a digest, a state key, an output) is this
        record's fault: what it did is undone and it is dead-lettered with the reason. Broker
        and state failures are not, and end the batch.
        """
        decide = (
            processor.process_provisioning
            if record.topic == self.settings.topic_provisioning
            else processor.process
        )
        try:
            outcome = decide(record.value, overlay)
            if outcome.reason == UNKNOWN_SOURCE and catch_up():
                outcome = decide(record.value, overlay)
            if outcome.verdict != Verdict.DEAD_LETTERED and not key_matches(record.key, outcome):
                # Whoever may write the topic could speak for any source, or put an account's
                # records on a partition that does not hold its state.
                outcome = processor.abandon(record.value, overlay, KEY_MISMATCH)
            return outcome, self._outputs(outcome, record)
        except NOT_THE_RECORDS_FAULT:
            raise
        except Exception as exc:
            outcome = processor.abandon(record.value, overlay, failure_reason(exc))
            return outcome, self._outputs(outcome, record)

    def _outputs(self, outcome: Outcome, record: InRecord) -> list[OutRecord]:
        """The records a decision produces: events, commands and dead letters."""
        s = self.settings
        produced: list[OutRecord] = []
        if outcome.verdict == Verdict.DEAD_LETTERED:
            produced.append(self._dead_letter(record, outcome.reason or "invalid record"))
        outputs = [
            event_record(s.topic_events, event, record.timestamp_ms) for event in outcome.events
        ]
        outputs += [  # keyed like the event, same transaction
            remediation_record(s.topic_remediations, command, record.timestamp_ms)
            for command in outcome.remediations
        ]
        for out in outputs:
            size = len(out.value or b"")
            if size > s.max_record_bytes:
                # The producer (and a broker with default limits) would refuse it, and the
                # batch would fail for ever: the input goes to the DLQ, saying why.
                reason = f"its output of {size} bytes is over NCD_MAX_RECORD_BYTES"
                produced.append(self._dead_letter(record, reason))
                continue
            produced.append(out)
        return produced

    def _dead_letter(self, record: InRecord, reason: str) -> OutRecord:
        log.warning(
            "record_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )
        return dead_letter(self.settings.topic_dlq, record, reason, self.settings.max_record_bytes)

    def _warn_guard(self, outcome: Outcome, partition: int) -> None:
        self.stats.deletes_suppressed += outcome.deletes_suppressed
        guard = outcome.guard
        log.warning(
            "delete_guard_tripped",
            source_id=outcome.source_id,
            partition=partition,
            suppressed=outcome.deletes_suppressed,
            previous_accounts=None if guard is None else guard.previous_count,
            threshold_percent=None if guard is None else guard.threshold_percent,
            reason=outcome.reason or "deletions over the source's deleteThreshold",
        )

    def _abort(
        self,
        sink: TransactionalSink,
        consumer: GroupConsumer,
        by_partition: dict[int, list[InRecord]],
    ) -> None:
        """Abort the transaction and rewind the consumer to the batch's first offsets; the
        batch's partitions are settled (``_settle``) before anything else is processed."""
        self.stats.aborted_batches += 1
        try:
            sink.abort()
        except TransportError as exc:
            log.warning("abort_failed", error=str(exc))
        firsts: dict[TP, int] = {}
        for batch in by_partition.values():
            for record in batch:
                firsts.setdefault(record.tp, record.offset)
        for tp, offset in firsts.items():
            if tp.partition in self._partitions:
                consumer.seek(tp, offset)
                self._unsettled.add(tp)
        log.warning("batch_aborted", records=sum(len(b) for b in by_partition.values()))

    def _settle(self, sink: TransactionalSink, consumer: GroupConsumer) -> None:
        """Resume aborted partitions from what is committed, not from what we believe.

        A commit can fail on our side after the broker applied it (its answer lost while the
        broker was frozen): its events, changelog records and input offsets are then
        committed although the batch raised. So once the transaction's outcome is final
        (``sink.settle``), each partition's store catches up from the changelog and the
        consumer moves to the group's committed offset: a batch that did commit is not
        processed, nor its events emitted, a second time.
        """
        sink.settle()
        for partition in sorted({tp.partition for tp in self._unsettled}):
            entry = self._partitions.get(partition)
            if entry is not None:
                self._restore(partition, entry.store)
        for tp in sorted(self._unsettled):
            if tp.partition in self._partitions:
                committed = consumer.committed(tp)
                if committed is not None:
                    consumer.seek(tp, committed)
        self._unsettled.clear()
