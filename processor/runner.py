"""The streaming worker's loop: recover, poll, decide, checkpoint, resume.

:meth:`Runner.run` only sequences the worker's concerns, each a small unit of its own under
``processor/worker/``:

* recover (:meth:`Runner._recover`): settle the partitions of an aborted batch
  (:class:`~processor.worker.checkpoint.Checkpoint`), do one bounded step of the changelog
  restore (:class:`~processor.worker.restore.Restorer`) and resume the partitions it
  finished (:class:`~processor.worker.partitions.Partitions`);
* poll (:meth:`Runner._poll`): one poll of the group consumer, lingering for a fuller batch;
  the rebalance callbacks it runs only mark partitions; records of partitions not ready are
  put back, and those of partitions whose provisioning input is behind are held back
  (:class:`~processor.worker.hold.ProvisioningHold`);
* decide (:class:`~processor.worker.batch.BatchDecider`) and checkpoint (one transaction:
  outputs, changelog and offsets, then local state; the order is explained in
  :mod:`processor.worker.checkpoint`); the batch's one tally feeds the log, the metrics and
  the aggregation summaries (:mod:`processor.worker.tally`).

One batch is one unit of work and, in exactly-once mode, one Kafka transaction. A retriable
broker failure aborts the batch, puts its records back and retries after a capped
exponential backoff; anything else ends the loop with the exception (the orchestrator
restarts the worker). Whatever decides something by time reads the injected
:class:`~processor.worker.clock.Clock`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import structlog

from processor.config import Guarantee, Settings
from processor.errors import BrokerAccessError, ProcessorError, TransportError
from processor.models import Operation
from processor.observability.aggregations import AggregationTracker
from processor.observability.metrics import Metrics
from processor.state.store import StoreFactory
from processor.topics import check_topics, ensure_topics
from processor.transport import (
    START_HINT,
    TP,
    GroupConsumer,
    InRecord,
    PartitionReader,
    TransactionalSink,
    Transport,
)
from processor.worker.batch import BatchDecider, by_partition
from processor.worker.checkpoint import Checkpoint
from processor.worker.clock import SYSTEM_CLOCK, Clock
from processor.worker.config_follower import ConfigFollower
from processor.worker.hold import ProvisioningHold
from processor.worker.partition import Verdict
from processor.worker.partitions import Partitions
from processor.worker.registry import SourceRegistry
from processor.worker.restore import Restorer
from processor.worker.tally import BatchTally, Stats, Tallies

log = structlog.get_logger("processor.runner")

#: How long start-up retries retriable faults (a fresh cluster, topics just created).
START_RETRY_S = 60.0
#: Consumer lag is sampled at most this often (it asks the client for every partition).
LAG_SAMPLE_S = 1.0


@dataclass
class _Loop:
    """The clients and units one run of the loop works with."""

    follower: ConfigFollower
    reader: PartitionReader
    sink: TransactionalSink
    consumer: GroupConsumer
    checkpoint: Checkpoint
    restorer: Restorer
    decider: BatchDecider
    hold: ProvisioningHold


def _start_given_up(exc: TransportError) -> BrokerAccessError:
    """The start's retriable fault that lasted ``START_RETRY_S``, as a refusal to start.

    Whatever the client (kafka-python gives up on silence as "no broker", librdkafka as a
    transport error), a worker that never got its topics from the broker exits as for bad
    settings (2), naming the settings to check.
    """
    if isinstance(exc, BrokerAccessError):
        return exc
    hint = "" if START_HINT in str(exc) else f" ({START_HINT})"
    return BrokerAccessError(
        f"{exc}: the broker did not serve the worker's start for {START_RETRY_S:.0f} s{hint}",
        retriable=False,
    )


def _next_offsets(records: list[InRecord]) -> dict[TP, int]:
    """The offset after the last record of each partition (records come in offset order)."""
    # Plain tuples per record (a ``TP`` per record cost ~0.4 us), ``TP`` once per partition.
    last = {(r.topic, r.partition): r.offset for r in records}
    return {TP(topic, partition): offset + 1 for (topic, partition), offset in last.items()}


class Runner:
    """The worker: owns the clients, the partitions assigned to it, and the loop."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        stores: StoreFactory,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.stats = Stats()
        self._transport = transport
        self._clock = clock
        self.ready = threading.Event()
        self.metrics = Metrics(
            verdicts=[v.value for v in Verdict], event_types=[o.value for o in Operation]
        )
        self.metrics.track_ready(self.ready.is_set)
        self.metrics.track_restoring(lambda: len(self._partitions.not_ready()))
        aggregations = AggregationTracker(clock.monotonic)
        self._tallies = Tallies(self.stats, self.metrics, aggregations)
        self._stores = stores
        self._registry = SourceRegistry()
        self._partitions = Partitions(settings, stores, self._registry, self.metrics, aggregations)
        self._loop: _Loop | None = None
        #: Counts rebalance callbacks, so that a batch being filled notices one.
        self._rebalances = 0
        # Whether the group has handed this member its partitions (maybe none).
        self._joined = False
        # Last sign of progress of the loop; None once the loop has ended.
        self._last_beat: float | None = clock.monotonic()
        self._lag_sampled = float("-inf")

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; the batch in progress is committed or aborted first."""
        s = self.settings
        loop = self._loop = self._open(stop)
        backoff = s.retry_backoff_first_s
        try:
            while not stop.is_set():
                self._last_beat = self._clock.monotonic()
                loop.follower.follow()
                try:
                    self._recover(loop)
                    records = self._poll(loop)
                    if records:
                        self._batch(loop, records)
                    backoff = s.retry_backoff_first_s
                except TransportError as exc:
                    if not exc.retriable:
                        raise
                    log.warning("batch_retried", error=str(exc), backoff_s=backoff)
                    self._clock.sleep(backoff)
                    backoff = min(backoff * 2, s.retry_backoff_max_s)
        finally:
            self._close(loop)

    def _recover(self, loop: _Loop) -> None:
        """Settle an aborted batch's partitions; restore a step; resume what is restored."""
        if loop.checkpoint.unsettled():
            loop.checkpoint.settle(self._partitions, loop.restorer)
        self._partitions.start(loop.consumer, loop.restorer)
        self._partitions.resume(loop.consumer)
        for partition, store in loop.restorer.step():
            self._partitions.restored(loop.consumer, partition, store)
        if self._joined and not self._partitions.restoring():
            self.ready.set()  # every assigned partition restored, and polling

    def _poll(self, loop: _Loop) -> list[InRecord]:
        """One poll (lingering for more); the records that may be decided now."""
        s = self.settings
        # While a restore runs, its steps wait for data: the consumer poll only keeps the
        # member in the group and feeds the partitions that are ready.
        timeout_s = 0.0 if self._partitions.restoring() else s.poll_timeout_s
        records = loop.consumer.poll(timeout_s, s.max_batch_records)
        if records and s.batch_linger_ms > 0:
            records = self._linger(loop.consumer, records)
        records = self._partitions.usable(loop.consumer, records)
        self._partitions.start(loop.consumer, loop.restorer)
        lag = loop.consumer.lag()  # from the last fetch: no broker round trip
        self._sample_lag(lag)
        # Every iteration, records or not: held partitions are resumed here.
        return loop.hold.apply(records, loop.consumer, lag)

    def _linger(self, consumer: GroupConsumer, records: list[InRecord]) -> list[InRecord]:
        """Fill the batch from further polls for up to ``batch_linger_ms``: one transaction
        costs a few broker round trips whatever its size, so bigger batches amortise it.

        A rebalance during the wait marks the partitions assigned again: their records,
        read before it or not, are put back by :meth:`Partitions.usable`.
        """
        s = self.settings
        deadline = self._clock.monotonic() + s.batch_linger_ms / 1000
        while len(records) < s.max_batch_records:
            left = deadline - self._clock.monotonic()
            if left <= 0:
                break
            generation = self._rebalances
            more = consumer.poll(min(left, s.poll_timeout_s), s.max_batch_records - len(records))
            records.extend(more)
            if self._rebalances != generation or not more:
                break
        return records

    def _batch(self, loop: _Loop, records: list[InRecord]) -> None:
        """Decide ``records`` and commit them as one checkpoint; abort it on any failure."""
        started = self._clock.monotonic()
        latest_ms = self._clock.time_ms() + int(self.settings.future_allowance_s * 1000)
        grouped = by_partition(records, self.settings.topic_provisioning)
        tally = BatchTally()
        try:
            # Inside the try: a failed begin must put the polled records back too.
            loop.checkpoint.begin()
            tally, overlays = loop.decider.decide(
                grouped, self._partitions.ready, loop.checkpoint, latest_ms
            )
            offsets = _next_offsets(records)
            commit_s = loop.checkpoint.commit(offsets, overlays, self._partitions)
        except BaseException:
            self.stats.aborted_batches += 1
            loop.checkpoint.abort(records, self._partitions)
            raise
        duration_s = self._clock.monotonic() - started
        self._tallies.committed(tally, duration_s=duration_s, commit_s=commit_s)

    # ------------------------------------------------------------------ start and stop

    def _open(self, stop: threading.Event) -> _Loop:
        """Start the clients: config read, restorer, sink, group consumer."""
        s = self.settings
        follower = self._start(stop)
        log.info("config_loaded", sources=len(self._registry), rejected=follower.rejected)
        reader = self._transport.partition_reader()
        restorer = Restorer(
            reader,
            s.topic_changelog,
            self._stores,
            clock=self._clock,
            metrics=self.metrics,
            stats=self.stats,
            transaction_timeout_s=s.transaction_timeout_ms / 1000,
        )
        sink = self._transport.sink(s.transactional_id)
        consumer = self._transport.group_consumer(
            [s.topic_aggregations, s.topic_provisioning], s.group_id, self
        )
        checkpoint = Checkpoint(
            sink,
            consumer,
            s.topic_changelog,
            exactly_once=s.guarantee == Guarantee.EXACTLY_ONCE,
            clock=self._clock,
        )
        hold = ProvisioningHold(
            s.topic_aggregations, s.topic_provisioning, self._partitions.pauses, self.stats
        )
        decider = BatchDecider(s, follower)
        return _Loop(follower, reader, sink, consumer, checkpoint, restorer, decider, hold)

    def _start(self, stop: threading.Event) -> ConfigFollower:
        """Create missing topics and read the config topics, retrying retriable faults.

        Workers started together on a fresh cluster race: a topic one of them has just
        created has leaders in the controller's metadata a moment before its partitions
        answer reads (NOT_LEADER_FOR_PARTITION), and a broker may still be starting.
        Such faults are retried with the loop's backoff for up to ``START_RETRY_S``.
        """
        s = self.settings
        deadline = self._clock.monotonic() + START_RETRY_S
        backoff = s.retry_backoff_first_s
        while True:
            reader = None
            try:
                admin = self._transport.admin()
                try:
                    # Topics someone else created are held to the same co-partitioning rule.
                    (ensure_topics if s.create_topics else check_topics)(admin, s)
                finally:
                    admin.close()
                reader = self._transport.partition_reader()
                follower = ConfigFollower(reader, s, self._registry, self._clock)
                follower.catch_up()
                return follower
            except TransportError as exc:
                if reader is not None:
                    reader.close()
                if not exc.retriable or stop.is_set():
                    raise
                if self._clock.monotonic() > deadline:
                    raise _start_given_up(exc) from exc
                log.warning("start_retried", error=str(exc), backoff_s=backoff)
                self._clock.sleep(backoff)
                backoff = min(backoff * 2, s.retry_backoff_max_s)

    def _close(self, loop: _Loop) -> None:
        """Close every client and store, whatever the others do: a client left in an error
        state by the failure that ends the loop must not hide that failure or keep stores
        open."""
        self.ready.clear()
        self._last_beat = None
        for what, close in (
            ("consumer", loop.consumer.close),
            ("sink", loop.sink.close),
            ("config reader", loop.follower.close),
            ("restorer", loop.reader.close),
        ):
            try:
                close()
            except ProcessorError as exc:
                log.warning("close_failed", client=what, error=str(exc))
        self._partitions.close_all(loop.restorer)
        log.info("worker_stopped", **self.summary())

    # ------------------------------------------------------------------ rebalance

    def on_assigned(self, tps: list[TP]) -> None:
        """Mark newly assigned partitions: the loop pauses, restores and resumes them.

        Not ready until they are restored (the loop sets ``ready`` again).
        """
        self._rebalances += 1
        self.ready.clear()
        self._partitions.on_assigned(tps)
        self._joined = True
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in tps))

    def on_revoked(self, tps: list[TP]) -> None:
        """Forget partitions taken away (no batch is open during a poll)."""
        self._rebalances += 1
        loop = self._loop
        self._partitions.on_revoked(tps, None if loop is None else loop.restorer)
        if loop is not None:
            for number in {tp.partition for tp in tps}:
                loop.hold.forget(number)
            loop.checkpoint.forget(tps)
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in tps))

    # ------------------------------------------------------------------ observing

    def live(self, now: float | None = None) -> bool:
        """Whether the loop made progress within ``max_poll_interval_ms``.

        A loop stuck longer than that has lost its partitions to the group anyway. ``now``
        is a reading of the clock's ``monotonic`` (default: the current one).
        """
        beat = self._last_beat
        limit_s = self.settings.max_poll_interval_ms / 1000
        now = self._clock.monotonic() if now is None else now
        return beat is not None and now - beat < limit_s

    def readiness(self) -> str:
        """What readiness waits for, in counts (the body of a 503 from ``/readyz``)."""
        if self._loop is None or not self._joined:
            return "waiting for the group to assign partitions"
        waiting = self._partitions.not_ready()
        if not waiting:
            return "restored; waiting for the next poll"
        # Read from the probe's thread: plain numbers the loop keeps, never a client call.
        left = self._loop.restorer.remaining()
        return f"restoring partitions {waiting}: {left} changelog offsets left in the current one"

    def _sample_lag(self, lag: dict[TP, int]) -> None:
        now = self._clock.monotonic()
        if now - self._lag_sampled >= LAG_SAMPLE_S:
            self._lag_sampled = now
            self.metrics.lag(lag)

    def summary(self) -> dict[str, Any]:
        """Counters for the shutdown line and for tests."""
        return self._tallies.summary()
